//! Policy decisions returned as values: the session asks, policy answers.
//!
//! Today: the relay decision for recipients. Later issues add here the HAT
//! (Host Access Table: sender groups → mail flow policies), the RAT
//! (Recipient Access Table), rate limits, DHAP and sender verification.

pub mod recipient;
