//! Runs the Python scenarios in tests/python that drive Debian's Chromium through Playwright.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The folder of the scenarios and of `browser.py`, which they import.
const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");

/// The Chromium used unless `CREDITD_TEST_CHROMIUM` names another: Debian's.
const CHROMIUM: &str = "/usr/bin/chromium";

/// What the scenarios import, and how to install it.
const PACKAGES: &str = "playwright.sync_api, axe_playwright_python";
const INSTALL: &str = "pip install 'playwright>=1.40,<2' 'axe-playwright-python>=0.1.7,<0.2'";

/// A Python that can import Playwright and axe-core, and the Chromium it
/// drives.
pub struct Browser {
    python: PathBuf,
    chromium: PathBuf,
}

impl Browser {
    /// The browser of this test binary, found once: `None` outside CI when
    /// the Python packages or Chromium are missing, after a notice saying
    /// what to install; under CI that is a failure.
    pub fn find() -> Option<&'static Browser> {
        static BROWSER: OnceLock<Option<Browser>> = OnceLock::new();
        BROWSER.get_or_init(Browser::look_for).as_ref()
    }

    fn look_for() -> Option<Browser> {
        let what = "the browser tests";
        let python = super::python_with(PACKAGES, what, INSTALL)?;
        let chromium = std::env::var_os("CREDITD_TEST_CHROMIUM")
            .map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
        if chromium.is_file() {
            return Some(Browser { python, chromium });
        }
        let chromium = chromium.display();
        if testkit::in_ci() {
            panic!(
                "{what} need Chromium under CI, but there is none at {chromium}; install \
                 Debian's (`apt-get install chromium`) or set CREDITD_TEST_CHROMIUM"
            );
        }
        // Written to the terminal directly: the test harness captures print
        // macros of passing tests.
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!(
                "\nSKIPPED: {what}, because there is no Chromium at {chromium}.\nInstall \
                 Debian's (`apt-get install chromium`), or set CREDITD_TEST_CHROMIUM, and run \
                 the tests again.\n"
            ),
        );
        None
    }

    /// Runs the scenario `tests/python/{scenario}` with `env` set, Chromium
    /// named by `CREDITD_TEST_CHROMIUM`; fails the test with everything it
    /// printed unless it exits with 0; answers what it printed to stdout.
    ///
    /// Runs off the runtime's workers, which serve the test's fakes (the
    /// fake Stripe's pages) meanwhile. Screenshots go to
    /// `CREDITD_SCREENSHOTS` when the test's environment sets it.
    pub async fn run(&self, scenario: &str, env: &[(&str, &str)]) -> String {
        let mut command = Command::new(&self.python);
        command
            .arg(Path::new(SCENARIOS).join(scenario))
            .current_dir(SCENARIOS)
            .env("CREDITD_TEST_CHROMIUM", &self.chromium)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        for (name, value) in env {
            command.env(name, value);
        }
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the scenario's task")
            .expect("running Python");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the browser scenario {scenario} failed ({}):\n{stderr}\n{stdout}",
            output.status
        );
        stdout
    }
}

/// A port free on `127.0.0.1` now, for a server that must know its own
/// address before it starts (its public URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
