//! Runs JIT-compiled handlers on the host: the code mapped read+execute with memmap2, and the
//! service trampoline. The tests' only `unsafe`.
#![allow(unsafe_code)]

use ash::interp::Machine;
use ash::jit::{self, Frame, Service};
use ash::{Actions, Handler, Run};
use memmap2::{Mmap, MmapOptions};

/// A handler's code, executable.
pub struct Executable {
    mapping: Mmap,
}

type Entry = unsafe extern "sysv64" fn(frame: *mut Frame) -> u64;

extern "sysv64" fn trampoline(frame: *mut Frame, index: u64) -> u64 {
    // SAFETY: the generated code passes the frame it was given, which `run` below made from
    // a live `&mut Frame`, and nothing else uses that frame while the call runs; `context`
    // holds the address of the live `Service` `run` set, used only here meanwhile.
    let frame = unsafe { &mut *frame };
    // SAFETY: as above: the `Service` `run` put there, alive and otherwise unused meanwhile.
    let service = unsafe { &mut *(frame.context as *mut Service<'_>) };
    service.serve(frame, index)
}

impl Executable {
    pub fn new(handler: &Handler) -> Executable {
        let compiled = jit::compile(handler).expect("verified handlers compile");
        let mut writable = MmapOptions::new()
            .len(compiled.code().len())
            .map_anon()
            .expect("an anonymous mapping");
        writable.copy_from_slice(compiled.code());
        Executable {
            mapping: writable.make_exec().expect("read+execute"),
        }
    }

    pub fn run(
        &self,
        handler: &Handler,
        packet: &[u8],
        machine: &mut Machine,
        actions: &mut dyn Actions,
    ) -> Run {
        jit::run(handler, packet, machine, actions, |frame, service| {
            frame.service = trampoline as *const () as u64;
            frame.context = service as *mut Service<'_> as u64;
            // SAFETY: the mapping holds the function `jit::compile` generated for `handler`
            // (System V, one pointer argument), read+execute and alive for this call; the
            // frame points at `packet`, alive for the call too.
            unsafe {
                let entry: Entry = core::mem::transmute(self.mapping.as_ptr());
                entry(frame as *mut Frame)
            }
        })
    }
}
