//! A fake kernel for the host tests: regions as vectors (handed out in small pieces, so the
//! piecewise paths run), transmitted frames collected, every region range asked for checked.
#![allow(dead_code)]

pub mod jit_exec;

use ash::Actions;
use ash::ir::RegionDecl;

#[derive(Debug, Default)]
pub struct FakeHost {
    pub regions: Vec<Vec<u8>>,
    /// Largest piece handed to the interpreter (pieces end at multiples of this).
    pub piece_bytes: usize,
    pub sent: Vec<Vec<u8>>,
    pub refuse_transmit: bool,
    pub wakes: u32,
    pub upcalls: Vec<u64>,
    /// Every range asked for that was outside its region: must stay empty.
    pub escapes: Vec<(u8, u32, u32)>,
}

impl FakeHost {
    pub fn for_regions(decls: &[RegionDecl]) -> FakeHost {
        FakeHost {
            regions: decls.iter().map(|d| vec![0; d.len as usize]).collect(),
            piece_bytes: 7,
            ..FakeHost::default()
        }
    }

    fn word(&mut self, region: u8, offset: u32) -> Option<&mut [u8]> {
        let bytes = self.regions.get_mut(region as usize)?;
        match bytes.get_mut(offset as usize..offset as usize + 8) {
            Some(word) => Some(word),
            None => {
                self.escapes.push((region, offset, 8));
                None
            }
        }
    }

    pub fn read_u64(&self, region: usize, offset: usize) -> u64 {
        u64::from_le_bytes(self.regions[region][offset..offset + 8].try_into().unwrap())
    }
}

impl Actions for FakeHost {
    fn region(
        &mut self,
        region: u8,
        offset: u32,
        len: u32,
        piece: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let Some(bytes) = self.regions.get_mut(region as usize) else {
            self.escapes.push((region, offset, len));
            return false;
        };
        let start = offset as usize;
        let end = start + len as usize;
        if end > bytes.len() {
            self.escapes.push((region, offset, len));
            return false;
        }
        let mut at = start;
        while at < end {
            let piece_end = ((at / self.piece_bytes + 1) * self.piece_bytes).min(end);
            piece(&mut bytes[at..piece_end]);
            at = piece_end;
        }
        true
    }

    fn fetch_add(&mut self, region: u8, offset: u32, value: u64) -> Option<u64> {
        let word = self.word(region, offset)?;
        let new = u64::from_le_bytes((&*word).try_into().unwrap()).wrapping_add(value);
        word.copy_from_slice(&new.to_le_bytes());
        Some(new)
    }

    fn compare_swap(&mut self, region: u8, offset: u32, expected: u64, new: u64) -> Option<u64> {
        let word = self.word(region, offset)?;
        let old = u64::from_le_bytes((&*word).try_into().unwrap());
        if old == expected {
            word.copy_from_slice(&new.to_le_bytes());
        }
        Some(old)
    }

    fn transmit(&mut self, frame: &[u8]) -> bool {
        if self.refuse_transmit {
            return false;
        }
        self.sent.push(frame.to_vec());
        true
    }

    fn wake(&mut self) {
        self.wakes += 1;
    }

    fn upcall(&mut self, argument: u64) {
        self.upcalls.push(argument);
    }
}
