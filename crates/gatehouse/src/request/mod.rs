//! One request as data, with no shared state: its route ([`route`]), its input
//! ([`input`], its body's pace in [`pace`]), its CGI/WSGI variables ([`environ`]) and
//! trusted-proxy headers ([`forwarded`]).

pub mod answer;
pub mod environ;
pub mod forwarded;
pub mod input;
pub(crate) mod pace;
pub mod route;
