//! The embedded ledger's block codec (gateway/src/ledger/embedded/codec.rs): every decoder over
//! the same bytes (a block file is read back by `tom serve` and `tom verify`).
use tom_fuzz::codec::{BlockHeader, Proposal, RawBlock, Transaction};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(block) = RawBlock::decode(data) {
            let _ = BlockHeader::decode(block.header_bytes);
            for tx in &block.transactions {
                let _ = Transaction::decode(tx);
            }
        }
        let _ = BlockHeader::decode(data);
        let _ = Transaction::decode(data);
        let _ = Proposal::decode(data);
    });
}
