"""Server-sent events through the WSGI bridge: /py/events.py streams the time, one event a
second (`?n=` events, default 30; `?interval=` seconds), as `text/event-stream`. Each piece
the generator yields is sent at once; the stream stays open as long as it keeps writing,
whatever the alias's `timeout` (which bounds only the wait for the reply to start and a
write to a client that reads nothing). A comment line (`: ...`) opens the stream, so that
the client and any proxy see bytes at once; send one every few seconds when events are rare,
as a heartbeat. Each open stream holds one of the alias's app threads (`threads`)."""

import time
from urllib.parse import parse_qs


def application(environ, start_response):
    query = parse_qs(environ.get('QUERY_STRING', ''))
    try:
        n = max(0, min(int(query.get('n', ['30'])[0]), 3600))
        interval = max(0.01, min(float(query.get('interval', ['1'])[0]), 60.0))
    except ValueError:
        start_response('400 Bad Request', [('Content-Type', 'text/plain')])
        return [b'n is a count and interval a number of seconds\n']
    start_response('200 OK', [
        ('Content-Type', 'text/event-stream'),
        ('Cache-Control', 'no-cache'),
    ])

    def events():
        yield b': stream open\n\n'
        for i in range(n):
            time.sleep(interval)
            yield ('id: %d\ndata: %s\n\n' % (i, time.strftime('%H:%M:%S'))).encode()

    return events()
