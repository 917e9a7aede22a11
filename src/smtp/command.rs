//! (to be written by the session work)
