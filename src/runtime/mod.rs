//! The thin runtime: everything that touches threads, sockets or clocks around the sans-IO
//! core. It turns readiness into core inputs and core outputs into writes, and makes no protocol
//! decisions (DESIGN.md, "The shape", items 2 and 3).

pub mod buffers;
pub mod deliveries;
pub mod descriptors;
pub mod limiter;
pub mod reactor;
pub mod snapshot;
pub mod workers;
