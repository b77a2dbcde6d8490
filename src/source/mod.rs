//! Where event lines come from. Each source runs as its own task and hands batches of
//! lines on; [`lines`] splits raw bytes into lines under the size limit.

pub mod lines;
