//! The standard process metrics (CPU time, memory, file descriptors, start time), read from /proc on Linux.

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Clock ticks per second in /proc's times: Linux reports them in USER_HZ,
/// which is 100 on every architecture it runs this on (the Prometheus Go
/// client assumes the same).
const TICKS_PER_SECOND: f64 = 100.0;

/// What the kernel tells about this process, each `None` where it could not
/// be read (and all of them on platforms other than Linux).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Process {
    /// User and system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Resident memory.
    pub resident_bytes: Option<u64>,
    /// Virtual memory.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors; `None` when unlimited.
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl Process {
    /// Reads this process's figures now.
    pub fn read() -> Process {
        if !cfg!(target_os = "linux") {
            return Process::default();
        }
        let stat = read("/proc/self/stat").as_deref().and_then(Stat::parse);
        let boot_time = read("/proc/stat").as_deref().and_then(boot_time_seconds);
        Process {
            cpu_seconds: stat.map(|s| (s.user_ticks + s.system_ticks) as f64 / TICKS_PER_SECOND),
            resident_bytes: resident_bytes(),
            virtual_bytes: stat.map(|s| s.virtual_bytes),
            // The directory's own descriptor, open while it is read, is
            // counted too, as the Prometheus clients do.
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as u64),
            max_fds: read("/proc/self/limits")
                .as_deref()
                .and_then(max_open_files),
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / TICKS_PER_SECOND),
        }
    }

    /// Adds the figures that could be read to `registry`, under the names
    /// Prometheus gives them.
    pub fn register(&self, registry: &mut Registry) {
        if let Some(seconds) = self.cpu_seconds {
            registry.register(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                ConstCounter::new(seconds),
            );
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                self.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                self.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                self.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                self.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                registry.register(name, help, ConstGauge::new(value));
            }
        }
        if let Some(seconds) = self.start_time_seconds {
            registry.register(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                ConstGauge::new(seconds),
            );
        }
    }
}

/// The resident memory of this process, where the platform tells (Linux).
pub fn resident_bytes() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    // /proc/self/status gives it in kB, so the page size need not be known.
    read("/proc/self/status")
        .as_deref()
        .and_then(resident_kib)
        .map(|kib| kib * 1024)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The fields of /proc/self/stat that the metrics use.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    start_ticks: u64,
    virtual_bytes: u64,
}

impl Stat {
    fn parse(text: &str) -> Option<Stat> {
        // The command name, in parentheses, may hold spaces and parentheses
        // itself; the fields after its last `)` start with the third, state.
        let (_, after) = text.rsplit_once(')')?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        Some(Stat {
            user_ticks: field(14)?,
            system_ticks: field(15)?,
            start_ticks: field(22)?,
            virtual_bytes: field(23)?,
        })
    }
}

/// The `btime` line of /proc/stat: when the machine booted.
fn boot_time_seconds(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of the `Max open files` line of /proc/self/limits.
fn max_open_files(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `VmRSS` line of /proc/self/status, in kB.
fn resident_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (cred (it) d 1) S 1 4242 4242 0 -1 4194560 1200 0 3 0 \
                    250 75 0 0 20 0 9 0 123456 987654321 3000 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17632 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            Stat::parse(text),
            Some(Stat {
                user_ticks: 250,
                system_ticks: 75,
                start_ticks: 123456,
                virtual_bytes: 987654321,
            })
        );
    }

    #[test]
    fn truncated_stat_is_not_read() {
        assert_eq!(Stat::parse("4242 (creditd) S 1 4242"), None);
    }

    #[test]
    fn boot_time_is_read_from_btime() {
        let text = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1800000000\nprocesses 7\n";
        assert_eq!(boot_time_seconds(text), Some(1_800_000_000));
    }

    #[test]
    fn max_fds_is_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95413                95413                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files     \n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[test]
    fn resident_memory_is_read_from_vmrss() {
        let text = "Name:\tcreditd\nVmSize:\t  912000 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(resident_kib(text), Some(20480));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_on_linux() {
        let process = Process::read();
        let resident = process.resident_bytes.unwrap();
        assert!(resident > 0);
        assert!(process.virtual_bytes.unwrap() >= resident);
        assert!(process.open_fds.unwrap() >= 3);
        assert!(process.max_fds.unwrap() >= process.open_fds.unwrap());
        assert!(process.cpu_seconds.unwrap() >= 0.0);
        assert!(process.start_time_seconds.unwrap() > 1_500_000_000.0);
    }
}
