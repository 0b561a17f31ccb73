//! memcached over UDP, client side: the wire format ([`proto`]), self-describing keys and values
//! ([`value`]), a connected socket with bounded waits and a blocking client ([`conn`]), a latency
//! histogram ([`hist`]), the load generator ([`load`], closed loop or [`pipeline`]d) with its reply checker
//! (stale reads, wrong keys, damaged values) and its report ([`report`]). Used by the `mcload`
//! tool and by the cache's end-to-end tests.

mod check;
pub mod conn;
pub mod hist;
pub mod load;
pub mod pipeline;
pub mod proto;
pub mod report;
pub mod value;

pub use conn::{Client, ClientError, Conn, Payload, WaitError};
pub use hist::Histogram;
pub use load::{run, LoadConfig, LoadError, Stop};
pub use proto::{ParseError, Protocol};
pub use report::{Counts, Latency, LoadReport, StaleRead};
