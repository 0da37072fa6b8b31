/* The Gatehouse environ ABI. Generated from crates/gatehouse-abi by cbindgen: do not edit. */

#ifndef GATEHOUSE_H
#define GATEHOUSE_H

#include <stddef.h>
#include <stdint.h>
/* The one symbol every plugin exports: `const gh_AppDescriptor *gatehouse_app(void);` */
#define GH_DESCRIPTOR_SYMBOL "gatehouse_app"

/* The ABI version as data, so that `gatehouse check` can read it from the file without
 * running any of the plugin's code: write `GH_EXPORT_ABI_VERSION;` once, at file scope. */
#define GH_ABI_VERSION_SYMBOL "gatehouse_abi_version"
#ifdef __cplusplus
#define GH_EXPORT_ABI_VERSION extern "C" const uint32_t gatehouse_abi_version = gh_ABI_VERSION
#else
#define GH_EXPORT_ABI_VERSION const uint32_t gatehouse_abi_version = gh_ABI_VERSION
#endif

/* A gh_Str initializer for a string literal: its bytes without the terminating NUL.
 * `gh_Str s = GH_STR("text/plain");`, or in an array of gh_Pair:
 * `{ GH_STR("Content-Type"), GH_STR("text/plain") }`. */
#define GH_STR(literal) { (const uint8_t *)(literal), sizeof(literal) - 1 }


// The ABI version this crate describes. The host refuses a plugin that reports another.
#define gh_ABI_VERSION 1

// A borrowed byte string: `len` bytes at `ptr`. `ptr` may be null only when `len` is 0.
typedef struct gh_Str {
  // First byte, or null for the empty string.
  const uint8_t *ptr;
  // Number of bytes.
  size_t len;
} gh_Str;

// A result code returned by plugin entry points and host callbacks.
//
// A `u32` with named constants rather than an enum: any value a C plugin returns is valid,
// and every value other than [`Status::OK`] means failure.
typedef uint32_t gh_Status;
// Success.
#define gh_Status_OK 0
// The call failed (for `handle`: the host answers 500 if no response was started).
#define gh_Status_ERROR 1
// A host callback was called out of order (for example `write` before `start_response`,
// or `start_response` twice).
#define gh_Status_BAD_STATE 2
// A host callback was given an invalid argument (a status outside 100..=999, a header
// name or value with bytes HTTP forbids).
#define gh_Status_INVALID 3
// The client went away or the response could not be delivered; stop producing it.
#define gh_Status_DISCONNECTED 4
// The request body is larger than the alias's `max_body` (the client gets 413).
#define gh_Status_TOO_LARGE 5

// A name/value pair of byte strings: an environ variable, a header, a parameter.
typedef struct gh_Pair {
  // The name.
  struct gh_Str name;
  // The value.
  struct gh_Str value;
} gh_Pair;

// What `init` is given: the alias's settings.
typedef struct gh_InitContext {
  // `size_of::<InitContext>()` as the host built it.
  uint32_t struct_size;
  // The alias URL this instance serves (for a directory group, the group's URL plus
  // `/NAME`).
  struct gh_Str alias;
  // The plugin file the host loaded.
  struct gh_Str plugin_path;
  // The folder holding the configuration file, for resolving relative paths in `env`.
  struct gh_Str config_dir;
  // The alias's `env` settings, in the order written.
  const struct gh_Pair *env;
  // Number of entries in `env`.
  size_t env_len;
  // Opaque host context for the callbacks below.
  void *host_ctx;
  // Reports why `init` failed; the host logs the message with the plugin's name.
  void (*report_error)(void *host_ctx, struct gh_Str message);
  // Opaque: this instance's WebSocket context, for [`InitContext::websocket_send`] and
  // [`InitContext::websocket_close`]. Unlike `host_ctx` it may be kept after `init`
  // returns, until `shutdown` returns. Appended after version 1.0 of this struct, like
  // the two callbacks: present only when `struct_size` reaches past them.
  void *sockets_ctx;
  // Sends one message on a WebSocket this instance accepted: `kind` is
  // [`WebSocketKind::TEXT`] (valid UTF-8) or [`WebSocketKind::BINARY`]. Callable from
  // any thread, at any time until `shutdown` returns. The host copies `data` before it
  // returns; while the socket's outbound queue is full it waits (at most the alias's
  // `timeout`, after which the socket is closed with 1008). Returns [`Status::OK`]
  // when queued, [`Status::DISCONNECTED`] once the socket is closed (or closing, or
  // not this instance's), [`Status::INVALID`] for another kind or text that is not UTF-8.
  gh_Status (*websocket_send)(void *sockets_ctx, uint64_t socket, uint32_t kind, struct gh_Str data);
  // Closes a WebSocket this instance accepted with `code` (1000, or 3000..=4999) and
  // `reason` (UTF-8, at most 123 bytes). Messages queued before it go out first; the app
  // then gets the socket's `CLOSE` event. Same threading and statuses as `websocket_send`.
  gh_Status (*websocket_close)(void *sockets_ctx,
                               uint64_t socket,
                               uint32_t code,
                               struct gh_Str reason);
} gh_InitContext;

// An uploaded file from a `multipart/form-data` body, spooled by the host to a temporary
// file that is removed after the request.
typedef struct gh_Upload {
  // The form field name.
  struct gh_Str field;
  // The file name the client sent (may be empty).
  struct gh_Str filename;
  // The part's Content-Type (may be empty).
  struct gh_Str content_type;
  // Path of the temporary file holding the content.
  struct gh_Str path;
  // Size of the content in bytes.
  uint64_t size;
} gh_Upload;

// The host's callbacks for one request. Every callback takes the [`Environ::request`]
// handle of the request it belongs to, and may be called only during that request's
// `handle` call, from the thread running it.
typedef struct gh_HostApi {
  // `size_of::<HostApi>()` as the host built it; fields may be appended in later versions.
  uint32_t struct_size;
  // Reads up to `cap` bytes of the request body into `buf`, waiting until at least one
  // byte, the end of the body or an error arrives. Returns the number of bytes read, 0
  // at the end of the body, or a failure [`Status`] negated: `-1` (ERROR: the body was
  // malformed or cut short), `-4` (DISCONNECTED), `-5` (TOO_LARGE: past `max_body`).
  // For form bodies the host has already parsed the body into parameters and this
  // returns 0 at once.
  ptrdiff_t (*read_body)(void *request, uint8_t *buf, size_t cap);
  // Writes `message` to the app's debug log if develop mode is on for the alias, or
  // always when `must` is nonzero (the seed's `debugLog(msg, must)`). Returns
  // [`Status::OK`] when the line was written or skipped by rule, [`Status::ERROR`] when
  // writing failed.
  gh_Status (*debug_log)(void *request, struct gh_Str message, uint32_t must);
  // Reports an error to the daemon's error log (the app's `wsgi.errors`), tagged with the
  // app name and request.
  void (*log_error)(void *request, struct gh_Str message);
  // Starts the response: an HTTP status (100..=999) and headers. Call once, before
  // `write`. The host copies everything before returning.
  gh_Status (*start_response)(void *request,
                              uint32_t status,
                              const struct gh_Pair *headers,
                              size_t headers_len);
  // Appends bytes to the response body. May be called any number of times after
  // `start_response`. The host copies the bytes before returning. The host holds back
  // the head and the first write, so that a response written in one piece goes out with
  // its exact length; from the second write on (or after `flush`) every write is sent as
  // it comes, waiting while the client is slower than the app. Returns
  // [`Status::DISCONNECTED`] once the client is gone.
  gh_Status (*write)(void *request, struct gh_Str data);
  // Sends the head and everything written so far now, instead of holding it back
  // (for a first chunk the client should see before the app writes more).
  gh_Status (*flush)(void *request);
  // Writes an informational line to the daemon's error log (what the app prints, as
  // opposed to an error), tagged like `log_error` and logged at level INFO. Appended
  // after version 1.0 of this struct: present only when `struct_size` reaches past it
  // (hosts built before it do not have it; use `log_error` then).
  void (*log_info)(void *request, struct gh_Str message);
  // Accepts a WebSocket handshake (`Upgrade: websocket`, already checked by the host)
  // with `protocol`, one of the client's `Sec-WebSocket-Protocol` values or empty for
  // none. On [`Status::OK`] the socket's id is in `*socket`: the host answers 101 when
  // `handle` returns (so register the socket before returning) and owns the connection,
  // `start_response` and `write` return [`Status::DISCONNECTED`], and the socket's
  // messages reach `websocket_event` from then on. Messages sent before `handle` returns
  // wait in the socket's queue (16).
  // [`Status::INVALID`]: not a WebSocket request, a protocol the client did not offer, or
  // a descriptor without `websocket_event` (the app may answer as usual);
  // [`Status::BAD_STATE`]: a response was started or a socket accepted already;
  // [`Status::DISCONNECTED`]: the alias has `max_websockets` open (the host answered 503).
  // Appended after `log_info`: present only when `struct_size` reaches past it.
  gh_Status (*websocket_accept)(void *request, struct gh_Str protocol, uint64_t *socket);
} gh_HostApi;

// One request, as the app sees it.
typedef struct gh_Environ {
  // `size_of::<Environ>()` as the host built it; fields may be appended in later versions.
  uint32_t struct_size;
  // CGI/WSGI variables (REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING, HTTP_*, the
  // alias's `env` settings, ...), one entry per name.
  const struct gh_Pair *vars;
  // Number of entries in `vars`.
  size_t vars_len;
  // Parameters: the query string's, then the form body's (urlencoded or multipart text
  // fields), in order, repeated names kept. Values are valid UTF-8.
  const struct gh_Pair *params;
  // Number of entries in `params`.
  size_t params_len;
  // Uploaded files from a multipart body.
  const struct gh_Upload *uploads;
  // Number of entries in `uploads`.
  size_t uploads_len;
  // Opaque handle of this request, passed back to every [`HostApi`] callback.
  void *request;
  // The host's callbacks.
  const struct gh_HostApi *host;
} gh_Environ;

// What an access or authentication hook decided. A `u32` with named constants: any other
// value counts as a failure of the hook (the daemon answers 500 and logs it).
typedef uint32_t gh_Verdict;
// Access granted, or the password is right (Python's `True`).
#define gh_Verdict_ALLOW 0
// Access refused, or the password is wrong (Python's `False`).
#define gh_Verdict_DENY 1
// No opinion (`allow_access`: the request goes on) or no such user (`check_password`:
// 401) (Python's `None`).
#define gh_Verdict_UNKNOWN 2
// The hook failed (an exception, a panic); the daemon answers 500.
#define gh_Verdict_ERROR 3

// Promises an app makes in [`AppDescriptor::flags`]: a `u32` of bits with named constants.
// The daemon ignores bits it does not know.
typedef uint32_t gh_AppFlags;
// No promise: calls run on the alias's thread pool (under `dispatch: auto`).
#define gh_AppFlags_NONE 0
// `handle` never blocks (no waiting on the network, a lock another thread holds, a
// child process or a sleep; a few microseconds to a millisecond of CPU) and answers with
// one whole reply. Under `dispatch: auto` (the default) the daemon then runs it on the
// HTTP worker that read the request, without a hand-off to the alias's threads; calls
// that break the promise (wait, or compute, longer than the daemon's inline budget)
// send the app's calls back to its thread pool for a while, with a warning in the error
// log.
#define gh_AppFlags_NEVER_BLOCKS 1

// The app's entry points and identity, returned by the exported `gatehouse_app` function.
// It must live as long as the library is loaded (a `static`).
typedef struct gh_AppDescriptor {
  // Must equal [`ABI_VERSION`].
  uint32_t abi_version;
  // `size_of::<AppDescriptor>()` as the plugin was built; at least the size of version 1.
  uint32_t struct_size;
  // The app's name (for logs and the route table).
  struct gh_Str name;
  // The app's version string.
  struct gh_Str version;
  // Called once after load. On success stores an opaque instance pointer in `*instance`
  // (it may stay null) and returns [`Status::OK`]; on failure returns another status,
  // having called `report_error` to say why.
  gh_Status (*init)(const struct gh_InitContext *ctx, void **instance);
  // Called per request, possibly from several threads at once.
  gh_Status (*handle)(void *instance, const struct gh_Environ *environ);
  // Called once before unload or at daemon stop, after the last `handle` returned.
  void (*shutdown)(void *instance);
  // Access hook (mod_wsgi's `WSGIAccessScript`): called before the app of an alias whose
  // `access_script` is this plugin, with the request's environ (no body) and the client's
  // address as `host`. [`Verdict::ALLOW`] or [`Verdict::UNKNOWN`] let the request on,
  // [`Verdict::DENY`] makes the daemon answer 403. May be called from several threads at
  // once. Appended after version 1.0 of this struct: read only when `struct_size` reaches
  // past it, and it may be null.
  gh_Verdict (*allow_access)(void *instance, const struct gh_Environ *environ, struct gh_Str host);
  // Basic authentication hook (mod_wsgi's `WSGIAuthUserScript`): called for an alias whose
  // `auth_user_script` is this plugin, with the environ (no body) and the credentials the
  // client sent. [`Verdict::ALLOW`] lets the request on with `REMOTE_USER` set to `user`;
  // [`Verdict::DENY`] (wrong password) and [`Verdict::UNKNOWN`] (no such user) make the
  // daemon answer 401 with the alias's realm. Same rules as `allow_access`.
  gh_Verdict (*check_password)(void *instance,
                               const struct gh_Environ *environ,
                               struct gh_Str user,
                               struct gh_Str password);
  // WebSocket events of the sockets this instance accepted (`websocket_accept`): a
  // message (`kind` [`WebSocketKind::TEXT`] or [`WebSocketKind::BINARY`], `data` the whole
  // reassembled message, valid for the call) or the end ([`WebSocketKind::CLOSE`], with
  // `close_code`; the last event of the socket, exactly once). Called on the alias's app
  // threads, one event of a socket at a time and in order; events of different sockets
  // may run at once. Returning anything but [`Status::OK`] closes the socket with 1011.
  // Appended after `check_password`: read only when `struct_size` reaches past it; may be
  // null (the app accepts no WebSocket).
  gh_Status (*websocket_event)(void *instance,
                               uint64_t socket,
                               uint32_t kind,
                               struct gh_Str data,
                               uint32_t close_code);
  // What the app promises about its calls: [`AppFlags`] bits (0: nothing). Appended after
  // `websocket_event`: read only when `struct_size` reaches past it.
  gh_AppFlags flags;
  // Zero. Keeps the struct's size a multiple of 8 the same way in Rust and C.
  uint32_t reserved;
} gh_AppDescriptor;

// The type of the exported `gatehouse_app` symbol.
typedef const struct gh_AppDescriptor *(*gh_DescriptorFn)(void);

// The kind of a WebSocket message or event ([`AppDescriptor::websocket_event`],
// [`InitContext::websocket_send`]): a `u32` with named constants, the RFC 6455 opcodes.
typedef uint32_t gh_WebSocketKind;
// A text message (its data is valid UTF-8).
#define gh_WebSocketKind_TEXT 1
// A binary message.
#define gh_WebSocketKind_BINARY 2
// The socket is closed: the last event of every accepted socket, exactly once, with
// the close code (1006 when the connection ended without a close frame).
#define gh_WebSocketKind_CLOSE 8

#endif  /* GATEHOUSE_H */
