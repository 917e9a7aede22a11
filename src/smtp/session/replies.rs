//! Reply slots: one per command, in command order, so replies leave in the
//! order the commands came (RFC 2920 §3) even when several policy questions
//! are answered out of order.
//!
//! A command answered on the spot gets a filled slot; a command that asked a
//! question gets an empty one, filled by `Session::answer`. Output (and the
//! mail log event) is released only up to the first empty slot.

use std::collections::VecDeque;

use super::{Event, Ticket};
use crate::smtp::reply::Reply;

/// One command's place in the reply order.
#[derive(Debug)]
struct Slot {
    command: String,
    argument: String,
    /// `Some` once the reply is known.
    reply: Option<Reply>,
    /// The question whose answer fills this slot.
    ticket: Option<Ticket>,
}

#[derive(Debug, Default)]
pub(super) struct Replies {
    slots: VecDeque<Slot>,
    next_ticket: u32,
}

impl Replies {
    /// A reply known now; it leaves after every reply before it.
    pub(super) fn push(&mut self, command: &str, argument: String, reply: Reply) {
        self.slots.push_back(Slot { command: command.to_string(), argument, reply: Some(reply), ticket: None });
    }

    /// An empty slot for a command that asks a question; the ticket names it.
    pub(super) fn ask(&mut self, command: &str, argument: String) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.slots.push_back(Slot { command: command.to_string(), argument, reply: None, ticket: Some(ticket) });
        ticket
    }

    /// Was this ticket ever handed out? (A late answer for a dropped slot is fine; an unknown one is a driver bug.)
    pub(super) fn issued(&self, ticket: Ticket) -> bool {
        ticket.0 < self.next_ticket
    }

    /// The answer to `ticket` is `reply`. False if the slot is gone (closed meanwhile).
    pub(super) fn fill(&mut self, ticket: Ticket, reply: Reply) -> bool {
        match self.slots.iter_mut().find(|s| s.ticket == Some(ticket)) {
            Some(slot) => {
                debug_assert!(slot.reply.is_none(), "{ticket:?} answered twice");
                slot.reply = Some(reply);
                true
            }
            None => false,
        }
    }

    /// Drop every slot after `ticket`'s: its reply closes the session.
    pub(super) fn truncate_after(&mut self, ticket: Ticket) {
        if let Some(i) = self.slots.iter().position(|s| s.ticket == Some(ticket)) {
            self.slots.truncate(i + 1);
        }
    }

    /// Drop every slot that cannot leave now (from the first empty one on).
    pub(super) fn abandon(&mut self) {
        if let Some(i) = self.slots.iter().position(|s| s.reply.is_none()) {
            self.slots.truncate(i);
        }
    }

    /// Replies held back (waiting for a question before them, or for their own).
    pub(super) fn held(&self) -> usize {
        self.slots.len()
    }

    /// Write every reply whose turn has come, and log it.
    pub(super) fn release(&mut self, output: &mut Vec<u8>, events: &mut Vec<Event>) {
        while self.slots.front().is_some_and(|s| s.reply.is_some()) {
            let slot = self.slots.pop_front().expect("front exists");
            let reply = slot.reply.expect("filled");
            reply.write_to(output);
            events.push(Event { command: slot.command, argument: slot.argument, reply });
        }
    }
}
