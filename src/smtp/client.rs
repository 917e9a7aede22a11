//! (to be written by the delivery client work)
