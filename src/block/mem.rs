//! A RAM-backed image for tests and benchmarks, with an optional injected
//! errno per operation so device tests can drive every error path.

use super::{BlockBackend, BlockError, BlockOp};

#[derive(Debug, Default, Clone)]
pub struct InjectedFault {
    pub op: Option<BlockOp>,
    /// Fail only requests that touch this byte offset (None: any).
    pub at_byte: Option<u64>,
    pub errno: i32,
    /// Remove the fault after it fired once.
    pub once: bool,
}

pub struct MemBackend {
    data: Vec<u8>,
    read_only: bool,
    write_cache: bool,
    pub faults: Vec<InjectedFault>,
    pub flushes: u64,
}

impl MemBackend {
    pub fn new(size: usize) -> Self {
        MemBackend { data: vec![0; size], read_only: false, write_cache: true, faults: Vec::new(), flushes: 0 }
    }

    pub fn with_data(data: Vec<u8>, read_only: bool) -> Self {
        MemBackend { data, read_only, write_cache: true, faults: Vec::new(), flushes: 0 }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn inject(&mut self, fault: InjectedFault) {
        self.faults.push(fault);
    }

    fn check_fault(&mut self, op: BlockOp, offset: u64, len: u64) -> Result<(), BlockError> {
        let hit = self.faults.iter().position(|f| {
            f.op.is_none_or(|o| o == op)
                && f.at_byte.is_none_or(|b| b >= offset && b < offset + len.max(1))
        });
        if let Some(i) = hit {
            let errno = self.faults[i].errno;
            if self.faults[i].once {
                self.faults.remove(i);
            }
            return Err(BlockError::Io { op, offset, len, errno });
        }
        Ok(())
    }

    fn range(&self, op: BlockOp, offset: u64, len: usize) -> Result<std::ops::Range<usize>, BlockError> {
        let size = self.data.len() as u64;
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(offset as usize..end as usize),
            _ => Err(BlockError::OutOfRange { op, offset, len: len as u64, size }),
        }
    }
}

impl BlockBackend for MemBackend {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let r = self.range(BlockOp::Read, offset, buf.len())?;
        self.check_fault(BlockOp::Read, offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let r = self.range(BlockOp::Write, offset, data.len())?;
        self.check_fault(BlockOp::Write, offset, data.len() as u64)?;
        self.data[r].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.check_fault(BlockOp::Flush, 0, 0)?;
        self.flushes += 1;
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        let r = self.range(BlockOp::Discard, offset, len as usize)?;
        self.check_fault(BlockOp::Discard, offset, len)?;
        self.data[r].fill(0);
        Ok(())
    }

    fn set_guest_write_cache(&mut self, enabled: bool) {
        self.write_cache = enabled;
    }

    fn guest_write_cache(&self) -> bool {
        self.write_cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_fault_fires_once_on_matching_range_only() {
        let mut m = MemBackend::new(4096);
        m.inject(InjectedFault { op: Some(BlockOp::Write), at_byte: Some(1024), errno: libc::ENOSPC, once: true });
        assert!(m.write_at(0, &[1; 512]).is_ok());
        assert_eq!(m.write_at(512, &[2; 1024]).unwrap_err().errno(), libc::ENOSPC);
        assert!(m.write_at(512, &[2; 1024]).is_ok());
        assert!(matches!(m.read_at(4000, &mut [0; 512]), Err(BlockError::OutOfRange { .. })));
    }
}
