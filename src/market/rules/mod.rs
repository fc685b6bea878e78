//! The market's rules as pure functions over plain data: no store, no clock, no I/O.
//!
//! The server calls them with what it read from the database; the backtesting lab (`crate::sim`)
//! calls the same functions with simulated data, so a strategy is judged by the rules it will meet
//! in production.

pub mod booking;
pub mod facts;
pub mod history;
pub mod pricing;
pub mod stats;
pub mod sweep;
