"""A WebSocket chat room through the WSGI bridge: /py/chat.py/ROOM. Every text message a
client sends goes to every client connected to the same room. A plain GET says how to
connect.

`environ['gatehouse.websocket']` is there when the request asks for a WebSocket; its
`accept(callback)` accepts it and returns the socket. The daemon then calls
`callback(ws, message)` on the alias's threads for each message (`str` for text, `bytes`
for binary), and `callback(ws, None)` once it closed. `ws.send()` and `ws.close()` work from
any thread. No thread waits on an idle socket. A room's members are this process's (with
`isolation: process` and `processes: 2`, each worker has its own rooms)."""

import threading

rooms = {}
lock = threading.Lock()


def application(environ, start_response):
    room = environ.get('PATH_INFO') or '/'
    offer = environ.get('gatehouse.websocket')
    if offer is None:
        start_response('200 OK', [('Content-Type', 'text/plain; charset=utf-8')])
        return [('A chat room (%s): connect a WebSocket client to this URL.\n' % room).encode()]

    def on_message(ws, message):
        if message is None:
            with lock:
                rooms.get(room, set()).discard(ws)
            return
        if isinstance(message, bytes):
            ws.close(1003, 'this chat takes text messages only')
            return
        with lock:
            members = list(rooms.get(room, ()))
        for member in members:
            try:
                member.send(message)
            except OSError:
                pass  # it is closing: its own close event removes it

    ws = offer.accept(on_message)
    with lock:
        rooms.setdefault(room, set()).add(ws)
    return []
