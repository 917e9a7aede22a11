//! SMTP, pure: parsing, replies, the server session and the client state
//! machine. Nothing in here touches a socket or a clock (see DESIGN.md,
//! "The pure core").

pub mod address;
pub mod body;
pub mod client;
pub mod command;
pub mod dsn;
pub mod received;
pub mod reply;
pub mod sasl;
pub mod session;

pub use reply::Reply;
pub use session::{
    Action, Banner, ConnectionPolicy, Decision, Peer, Phase, Question, Session, SessionConfig, StoreError, Ticket,
};
