//! libpcap: `pcap_compile` (optimised) per filter, run by libpcap's own `bpf_filter`, the
//! interpreter tcpdump uses. The compiled instructions also feed bpfjit and the eBPF peers.

use pcap::{BpfProgram, Capture, Dead, Linktype};

use super::{Demux, first_match};
use crate::bench::cbpf_to_ebpf::CbpfInsn;
use crate::bench::packets::{PacketArena, PacketSpan};

/// One filter as libpcap compiled it.
pub struct CompiledFilter {
    /// The program libpcap runs.
    pub program: BpfProgram,
    /// Its instructions.
    pub instructions: Vec<CbpfInsn>,
}

impl std::fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("instructions", &self.instructions.len())
            .finish()
    }
}

/// `pcap_compile` on a dead Ethernet handle, as tcpdump `-y EN10MB` would.
pub struct PcapCompiler {
    capture: Capture<Dead>,
}

impl std::fmt::Debug for PcapCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PcapCompiler")
    }
}

/// Reads an instruction back from the `pcap` crate's `"code jt jf k"` display (its fields are
/// private; the display is the safe way to reach them).
pub fn parse_instruction(text: &str) -> Option<CbpfInsn> {
    let mut fields = text.split_whitespace();
    let insn = CbpfInsn {
        code: fields.next()?.parse().ok()?,
        jt: fields.next()?.parse().ok()?,
        jf: fields.next()?.parse().ok()?,
        k: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(insn)
}

impl PcapCompiler {
    /// A compiler for Ethernet frames (snapshot length 65535).
    pub fn ethernet() -> Result<PcapCompiler, String> {
        let capture = Capture::dead(Linktype::ETHERNET).map_err(|e| format!("libpcap: {e}"))?;
        Ok(PcapCompiler { capture })
    }

    /// Compiles `expression` with the optimiser on.
    pub fn compile(&self, expression: &str) -> Result<CompiledFilter, String> {
        let program = self
            .capture
            .compile(expression, true)
            .map_err(|e| format!("pcap_compile({expression:?}): {e}"))?;
        let instructions = program
            .get_instructions()
            .iter()
            .map(|i| {
                parse_instruction(&i.to_string())
                    .ok_or_else(|| format!("unexpected instruction display {:?}", i.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledFilter {
            program,
            instructions,
        })
    }
}

/// libpcap's `bpf_filter` over each program in turn.
#[derive(Debug)]
pub struct Libpcap<'a> {
    filters: &'a [CompiledFilter],
}

impl<'a> Libpcap<'a> {
    /// Runs `filters` in order.
    pub fn new(filters: &'a [CompiledFilter]) -> Libpcap<'a> {
        Libpcap { filters }
    }
}

impl Demux for Libpcap<'_> {
    #[inline]
    fn classify(&mut self, arena: &PacketArena, span: PacketSpan) -> Option<u32> {
        let data = arena.data(span);
        first_match(self.filters, |f| f.program.filter(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_round_trip_through_display() {
        let compiler = PcapCompiler::ethernet().unwrap();
        let compiled = compiler.compile("ip and tcp and dst port 80").unwrap();
        assert_eq!(compiled.instructions[0], CbpfInsn::new(0x28, 0, 0, 12));
        assert_eq!(compiled.instructions.last().unwrap().code, 0x06);
        assert!(compiler.compile("ip and and").is_err());
        assert_eq!(parse_instruction("6 0 0 4294967295").unwrap().k, u32::MAX);
        assert!(parse_instruction("6 0 0").is_none());
    }
}
