//! One stream to many readers: a source or a view sends each message to every query that reads
//! it, tagged with the input it is for that query (a query over `UNION ALL` has several).

use tokio::sync::mpsc;

use crate::message::Message;

/// A message for one input of a query.
pub type Tagged = (usize, Message);

/// One reader of a stream: the query's channel, and which of its inputs the stream is.
#[derive(Clone)]
pub struct Subscriber {
    pub tx: mpsc::Sender<Tagged>,
    pub input: usize,
}

/// The readers of a stream.
#[derive(Clone, Default)]
pub struct Fanout {
    subscribers: Vec<Subscriber>,
}

impl Fanout {
    pub fn new(subscribers: Vec<Subscriber>) -> Self {
        Self { subscribers }
    }

    pub fn push(&mut self, subscriber: Subscriber) {
        self.subscribers.push(subscriber);
    }

    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Sends `message` to every reader, waiting while a reader's channel is full (backpressure).
    /// Readers that have stopped are dropped; false when none is left.
    pub async fn send(&mut self, message: Message) -> bool {
        let mut i = 0;
        while i < self.subscribers.len() {
            let s = &self.subscribers[i];
            if s.tx.send((s.input, message.clone())).await.is_err() {
                self.subscribers.swap_remove(i);
            } else {
                i += 1;
            }
        }
        !self.subscribers.is_empty()
    }
}
