//! A broadcast chat room over WebSockets: every text message a client sends goes to every
//! client connected to the same URL, so `/chat/ROOM` keeps rooms apart (the room is the
//! request's PATH_INFO). A plain GET (no WebSocket) answers with a short page saying how to
//! connect.
//!
//! The rooms are a map from room to its sockets, behind one mutex; a message is sent to the
//! room's sockets outside the lock, from the app thread that received it. A socket whose
//! send fails (it is closing) is dropped from its room; every socket leaves its room with
//! its [`Message::Close`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use gatehouse_app::{App, Init, Message, Request, Response, Socket};

/// The chat rooms: room → its sockets, and socket id → its room.
#[derive(Debug, Default)]
struct Chat {
    rooms: Mutex<Rooms>,
}

#[derive(Debug, Default)]
struct Rooms {
    members: HashMap<String, Vec<Socket>>,
    room_of: HashMap<u64, String>,
}

impl Rooms {
    fn leave(&mut self, socket: &Socket) {
        let Some(room) = self.room_of.remove(&socket.id()) else { return };
        if let Some(members) = self.members.get_mut(&room) {
            members.retain(|s| s != socket);
            if members.is_empty() {
                self.members.remove(&room);
            }
        }
    }
}

impl Chat {
    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `text` to everyone in `socket`'s room (the sender too).
    fn broadcast(&self, socket: &Socket, text: &str) {
        let members = {
            let rooms = self.rooms();
            let Some(room) = rooms.room_of.get(&socket.id()) else { return };
            rooms.members.get(room).cloned().unwrap_or_default()
        };
        let gone: Vec<Socket> =
            members.into_iter().filter(|s| s.send_text(text).is_err()).collect();
        if !gone.is_empty() {
            let mut rooms = self.rooms();
            for s in &gone {
                rooms.leave(s);
            }
        }
    }
}

impl App for Chat {
    fn init(init: &Init<'_>) -> Result<Self, String> {
        if init.sockets().is_none() {
            return Err("this daemon has no WebSockets (it is older than the chat)".into());
        }
        Ok(Chat::default())
    }

    fn handle(&self, req: &Request<'_>) -> Response {
        let room = match req.path_info() {
            "" => "/".to_owned(),
            p => p.to_owned(),
        };
        if !req.wants_websocket() {
            return Response::text(format!(
                "A chat room: connect a WebSocket client to this URL (room {room}); every text \
                 message goes to everyone in the room.\n"
            ));
        }
        let protocol = req.websocket_protocols().find(|p| *p == "chat");
        let Some(socket) = req.accept_websocket(protocol) else {
            return Response::text("cannot accept this WebSocket\n").with_status(400);
        };
        let mut rooms = self.rooms();
        rooms.members.entry(room.clone()).or_default().push(socket);
        rooms.room_of.insert(socket.id(), room);
        // Not sent: the daemon answered 101.
        Response::text("")
    }

    fn on_message(&self, socket: &Socket, message: Message<'_>) {
        match message {
            Message::Text(text) => self.broadcast(socket, text),
            Message::Binary(_) => {
                let _ = socket.close(1003, "this chat takes text messages only");
            }
            Message::Close { .. } => self.rooms().leave(socket),
        }
    }
}

gatehouse_app::export!(app: Chat);
