//! The stylesheet and the embed's script, built into the binary.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The pages' one stylesheet.
const STYLESHEET: &str = include_str!("../../assets/creditd.css");

/// The script that defines `<creditd-balance>`.
const EMBED_SCRIPT: &str = include_str!("../../assets/creditd.js");

/// `GET /assets/creditd.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// `GET /embed/creditd.js`: any page may include it, so any origin may
/// load it.
pub async fn embed_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        EMBED_SCRIPT,
    )
        .into_response()
}
