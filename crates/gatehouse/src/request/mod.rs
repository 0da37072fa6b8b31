//! One request as data, with no shared state: its route ([`route`]), its input
//! ([`input`]), its CGI/WSGI variables ([`environ`]) and trusted-proxy headers
//! ([`forwarded`]).

pub mod answer;
pub mod environ;
pub mod forwarded;
pub mod input;
pub mod route;
