//! WebSockets for WSGI scripts, in the spirit of uWSGI's `uwsgi.websocket_handshake`, but
//! event-driven (no thread waits on an idle socket): a request with a WebSocket handshake
//! has `environ['gatehouse.websocket']`, whose `accept(callback, protocol=None)` accepts it
//! and returns a `WebSocket`. The daemon then calls `callback(ws, message)` on the alias's
//! threads for each message (`str` for text, `bytes` for binary), and once, last,
//! `callback(ws, None)` when it closed (`ws.close_code` says how). `ws.send(str | bytes)`
//! and `ws.close(code=1000, reason='')` work from any thread, at any time; they raise
//! `OSError` once the socket is closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use gatehouse_abi::{Status, WebSocketKind};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::abi::Call;

/// Each accepted socket's callback and `WebSocket` object, by id.
type Held = HashMap<u64, (Py<PyAny>, Py<WebSocket>)>;

/// The accepted sockets of this process.
static SOCKETS: LazyLock<Mutex<Held>> = LazyLock::new(Mutex::default);

/// `environ['gatehouse.websocket']`: the request's WebSocket handshake, to accept.
#[pyclass(frozen, module = "gatehouse_wsgi")]
pub(crate) struct WebSocketOffer {
    call: Arc<Call>,
}

/// An accepted WebSocket.
#[pyclass(frozen, module = "gatehouse_wsgi")]
pub(crate) struct WebSocket {
    id: u64,
    close_code: AtomicU32,
}

/// Adds `gatehouse.websocket` to `d` when the request asks for a WebSocket.
pub(crate) fn offer(py: Python<'_>, call: &Arc<Call>, d: &Bound<'_, PyDict>) -> PyResult<()> {
    let asks = call.var(b"HTTP_UPGRADE").is_some_and(|u| {
        String::from_utf8_lossy(&u).split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    if asks {
        d.set_item(
            "gatehouse.websocket",
            Bound::new(py, WebSocketOffer { call: Arc::clone(call) })?,
        )?;
    }
    Ok(())
}

#[pymethods]
impl WebSocketOffer {
    /// Accepts the WebSocket with `protocol` (one the client offered, or `None`); the
    /// application then returns (an empty iterable: the daemon answered 101). `callback(ws,
    /// message)` gets every message, then `None` once it closed.
    #[pyo3(signature = (callback, protocol = None))]
    fn accept(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        protocol: Option<&str>,
    ) -> PyResult<Py<WebSocket>> {
        if !callback.bind(py).is_callable() {
            return Err(PyTypeError::new_err("accept() needs a callable: callback(ws, message)"));
        }
        let id = match self.call.websocket_accept(protocol.unwrap_or_default().as_bytes()) {
            Ok(id) => id,
            Err(Status::DISCONNECTED) => {
                return Err(PyOSError::new_err(
                    "cannot accept the WebSocket: too many are open (the client got 503), or \
                     the client left",
                ));
            }
            Err(Status::INVALID) => {
                return Err(PyValueError::new_err(
                    "cannot accept the WebSocket: the client did not offer that protocol",
                ));
            }
            Err(status) => {
                return Err(PyRuntimeError::new_err(format!(
                    "cannot accept the WebSocket (status {}): a response was started, or this \
                     is not the thread serving the request",
                    status.0
                )));
            }
        };
        let ws = Py::new(py, WebSocket { id, close_code: AtomicU32::new(0) })?;
        let entry = (callback, ws.clone_ref(py));
        SOCKETS.lock().unwrap_or_else(PoisonError::into_inner).insert(id, entry);
        Ok(ws)
    }
}

#[pymethods]
impl WebSocket {
    /// The socket's id, unique for the daemon's life.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// The close code once it closed (1006: the connection ended without one); else None.
    #[getter]
    fn close_code(&self) -> Option<u32> {
        Some(self.close_code.load(Ordering::Acquire)).filter(|&c| c != 0)
    }

    /// Sends `message`: a `str` as text, `bytes` as binary. Waits while the client is
    /// slower than the app (without the GIL).
    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<()> {
        let (kind, data) = if let Ok(s) = message.cast::<PyString>() {
            (WebSocketKind::TEXT, s.to_str()?.as_bytes().to_vec())
        } else if let Ok(b) = message.cast::<PyBytes>() {
            (WebSocketKind::BINARY, b.as_bytes().to_vec())
        } else {
            return Err(PyTypeError::new_err("send() takes a str (text) or bytes (binary)"));
        };
        let id = self.id;
        match py.detach(|| crate::abi::websocket_send(id, kind, &data)) {
            Status::OK => Ok(()),
            _ => Err(PyOSError::new_err("the WebSocket is closed")),
        }
    }

    /// Closes it with `code` (1000, or 3000..=4999) and `reason` (at most 123 bytes).
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        let id = self.id;
        match py.detach(|| crate::abi::websocket_close(id, code, reason)) {
            Status::OK => Ok(()),
            Status::INVALID => Err(PyValueError::new_err("a close code or reason not allowed")),
            _ => Err(PyOSError::new_err("the WebSocket is closed")),
        }
    }

    fn __repr__(&self) -> String {
        format!("<WebSocket {}>", self.id)
    }
}

/// An event of socket `socket`: its callback, with the message (None for the close).
pub(crate) fn event(socket: u64, kind: WebSocketKind, data: &[u8], code: u16) -> Status {
    crate::abi::keep_thread_state();
    Python::attach(|py| {
        let entry = {
            let mut sockets = SOCKETS.lock().unwrap_or_else(PoisonError::into_inner);
            if kind == WebSocketKind::CLOSE {
                sockets.remove(&socket)
            } else {
                sockets.get(&socket).map(|(cb, ws)| (cb.clone_ref(py), ws.clone_ref(py)))
            }
        };
        let Some((callback, ws)) = entry else { return Status::ERROR };
        let message: Py<PyAny> = match kind {
            WebSocketKind::TEXT => {
                PyString::new(py, &String::from_utf8_lossy(data)).into_any().unbind()
            }
            WebSocketKind::BINARY => PyBytes::new(py, data).into_any().unbind(),
            _ => {
                ws.get().close_code.store(u32::from(code), Ordering::Release);
                py.None()
            }
        };
        match callback.call1(py, (ws, message)) {
            Ok(_) => Status::OK,
            Err(e) => {
                e.print(py);
                Status::ERROR
            }
        }
    })
}
