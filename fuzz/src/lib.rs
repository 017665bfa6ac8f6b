//! Shared pieces of the fuzz targets. The embedded ledger's block codec is compiled here from
//! its own source file (it depends only on `std`, `ring` and `tom-contract`), so the targets do
//! not build the whole gateway with AFL instrumentation.

#[allow(dead_code, reason = "the fuzz targets use the decoders only")]
#[path = "../../gateway/src/ledger/embedded/codec.rs"]
pub mod codec;
