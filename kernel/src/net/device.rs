//! The virtio-net device: `virtio-drivers`' raw driver over our [`Hal`] (DMA from the frame
//! allocator, physical = virtual through the kernel's identity map), found on PCI bus 0.
//!
//! Transmit does not wait for the device: a frame is copied into one of the kernel's
//! transmit buffers and queued, and the buffer stays the device's until it reports the frame
//! sent; completions are taken back on every send and every receive poll. Waiting for the
//! device to take each frame (virtio-drivers' `send`) was, under QEMU, a spin in guest
//! instructions: most of the kernel's `net_transmit` layer, the largest of a request in
//! `bench net`'s profile. A full queue is an error
//! value the caller sees, never a wait, and each environment may hold only
//! [`TX_BUFFERS_PER_SENDER`] of the buffers, so one that sends faster than the device drains
//! leaves the rest to the others.
//!
//! Receive is interrupt-driven with polling under load: the device raises its legacy INTx
//! line (the PCI interrupt line the firmware wrote at config offset 0x3C, through the 8259
//! PICs); reading its ISR status acknowledges it. With `VIRTIO_F_RING_EVENT_IDX` (which
//! virtio-drivers negotiates and QEMU offers) the driver's `used_event` follows what it has
//! taken, so the device interrupts only when a frame arrives in a queue the kernel had
//! emptied: while frames are left over the device stays quiet and the kernel polls (the net
//! module's budget), and emptying the queue re-arms the interrupt. Every receive buffer is one
//! frame, so a buffer never straddles discontiguous memory.
//!
//! This is one of the kernel's named `unsafe` modules: DMA and device memory.
use crate::arch::pci::PortConfigurationAccess;
use crate::mm::{frames, paging};
use core::ptr::NonNull;
pub use exo_kernel::tx_buffers::Sender;
use exo_kernel::tx_buffers::{QueueFull, TxBuffers};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, PciRoot};
use virtio_drivers::transport::{DeviceType, pci::virtio_device_type};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use x86_64::PhysAddr as X86PhysAddr;
use x86_64::structures::paging::PhysFrame;

/// Receive (and transmit) queue size.
pub const QUEUE_SIZE: usize = 256;
/// Transmit buffers: frames queued on the device and not yet taken back. Each is a frame of
/// its own (a descriptor for one contiguous buffer, the virtio header in front).
const TX_BUFFERS: usize = 128;
/// The most transmit buffers one environment's frames may hold at once: libnet's largest
/// burst (`MAX_BURST_FRAMES`, 64), and half of them, so one environment flooding the device
/// leaves the other half to everyone else.
const TX_BUFFERS_PER_SENDER: usize = TX_BUFFERS / 2;
const PAGE_BYTES: usize = 4096;
const _: () = assert!(TX_BUFFERS <= QUEUE_SIZE && TX_BUFFERS <= u8::MAX as usize + 1);

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRefusal {
    /// Every transmit buffer is on the device, or the sender holds its share of them: the
    /// device has not yet sent what it was given. Trying again later can succeed.
    QueueFull,
    /// The device or its driver refused the frame (too long for a buffer, a queue error).
    Refused,
}

/// Why [`Nic::send_with`] queued nothing (and holds no buffer for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsent<E> {
    /// No buffer for the sender ([`SendRefusal::QueueFull`]); the fill did not run.
    QueueFull,
    /// The frame does not fit a buffer behind the virtio header; the fill did not run.
    TooLong,
    /// The fill refused.
    Fill(E),
    /// The driver refused the filled buffer (its queue had no descriptor).
    Driver,
}

/// The kernel's DMA and address translation for virtio-drivers.
#[derive(Debug)]
pub struct KernelHal;

// SAFETY: (1) dma_alloc returns zeroed, physically contiguous frames from the frame
// allocator (checked below), owned by the driver until dma_dealloc returns them; the identity
// map makes the virtual address equal to the physical one. (2) mmio_phys_to_virt maps the
// device range uncached before returning its identity address. (3) share/unshare: every buffer
// the kernel gives the driver is identity-mapped RAM (receive buffers are frames, headers live
// on the kernel's identity-mapped stacks), so the physical address is the virtual one; the
// driver's own indirect descriptor lists are on the kernel heap, translated through the
// kernel's page table, and refused (panic) if they straddle discontiguous frames.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let first = frames::allocate().expect("a frame for DMA");
        let start = first.start_address().as_u64();
        for index in 1..pages {
            let frame = frames::allocate().expect("a frame for DMA");
            assert_eq!(
                frame.start_address().as_u64(),
                start + (index * PAGE_BYTES) as u64,
                "DMA frames are contiguous (allocated at boot, before anything is freed)"
            );
        }
        // SAFETY: the frames were just allocated (no other owner) and are identity-mapped.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, pages * PAGE_BYTES) };
        (
            start,
            NonNull::new(start as *mut u8).expect("frame 0 is never allocated"),
        )
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        for index in 0..pages {
            frames::free(PhysFrame::containing_address(X86PhysAddr::new(
                paddr + (index * PAGE_BYTES) as u64,
            )));
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        paging::map_device_memory(paddr, size as u64);
        NonNull::new(paddr as *mut u8).expect("BARs are not at 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let address = buffer.as_ptr() as *mut u8 as u64;
        let length = buffer.len() as u64;
        if address + length <= frames::MANAGED_BYTES {
            return address;
        }
        // The driver's indirect descriptor lists live on the kernel heap.
        let first = paging::kernel_heap_physical_address(address);
        let last = paging::kernel_heap_physical_address(address + length - 1);
        match (first, last) {
            (Some(first), Some(last)) if last - first == length - 1 => first,
            _ => panic!("DMA buffer {address:#x}+{length} is not physically contiguous RAM"),
        }
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// The NIC with its posted receive buffers.
pub struct Nic {
    raw: VirtIONetRaw<KernelHal, PciTransport, QUEUE_SIZE>,
    /// Receive buffer `token` is frame `rx_frames[token]`.
    rx_frames: [u64; QUEUE_SIZE],
    /// The transmit buffers' frames.
    tx_frames: [u64; TX_BUFFERS],
    /// Which of them are free, which are on the device under which token, for whom.
    tx_buffers: TxBuffers<TX_BUFFERS, QUEUE_SIZE>,
    mac: [u8; 6],
    /// The PIC input its interrupt arrives on (`None`: polled only).
    irq: Option<u8>,
}

/// PCI configuration offset of the interrupt line and pin registers.
const INTERRUPT_LINE_OFFSET: u8 = 0x3c;

impl core::fmt::Debug for Nic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Nic({:02x?})", self.mac)
    }
}

/// Finds the first virtio-net function on PCI bus 0 and brings it up; `None` without one.
pub fn probe() -> Option<Nic> {
    let mut root = PciRoot::new(PortConfigurationAccess);
    let (function, _) = root
        .enumerate_bus(0)
        .find(|(_, info)| virtio_device_type(info) == Some(DeviceType::Network))?;
    // The interrupt line register (the low byte at 0x3C): the PIC input the firmware routed
    // the function's INTx to; 0xFF (or anything past the PICs' 16) means none.
    let line = (PortConfigurationAccess.read_word(function, INTERRUPT_LINE_OFFSET) & 0xff) as u8;
    let irq = (line < 16).then_some(line);
    let mut command = Command::MEMORY_SPACE | Command::BUS_MASTER;
    if irq.is_none() {
        command |= Command::INTERRUPT_DISABLE;
    }
    root.set_command(function, command);
    let transport = match PciTransport::new::<KernelHal, _>(&mut root, function) {
        Ok(transport) => transport,
        Err(error) => {
            log!("net: virtio-net at {function:?} unusable: {error:?}");
            return None;
        }
    };
    let mut raw = match VirtIONetRaw::<KernelHal, _, QUEUE_SIZE>::new(transport) {
        Ok(raw) => raw,
        Err(error) => {
            log!("net: virtio-net init failed: {error:?}");
            return None;
        }
    };
    // Without event indices this clears the "no interrupt" flags; with them (see the module
    // comment) the device interrupts when the kernel has caught up.
    raw.enable_interrupts();
    let mut rx_frames = [0u64; QUEUE_SIZE];
    for (index, slot) in rx_frames.iter_mut().enumerate() {
        let frame = frames::allocate().expect("a frame for a receive buffer");
        *slot = frame.start_address().as_u64();
        // SAFETY: the frame is ours for the life of the kernel (the NIC is never torn down)
        // and identity-mapped; the device writes it only until we take it back in `receive`.
        let token = unsafe { raw.receive_begin(buffer(*slot)) }.expect("posting a buffer");
        assert_eq!(usize::from(token), index);
    }
    let mac = raw.mac_address();
    match irq {
        Some(irq) => log!(
            "net: virtio-net at {function:?}, MAC {mac:02x?}, {QUEUE_SIZE} receive buffers, IRQ {irq}"
        ),
        None => log!(
            "net: virtio-net at {function:?}, MAC {mac:02x?}, {QUEUE_SIZE} receive buffers, no interrupt line (polled)"
        ),
    }
    let tx_frames = [(); TX_BUFFERS].map(|()| {
        frames::allocate()
            .expect("a frame for a transmit buffer")
            .start_address()
            .as_u64()
    });
    Some(Nic {
        raw,
        rx_frames,
        tx_frames,
        tx_buffers: TxBuffers::new(TX_BUFFERS_PER_SENDER),
        mac,
        irq,
    })
}

fn buffer<'a>(frame: u64) -> &'a mut [u8] {
    // SAFETY: `frame` is a receive or transmit buffer frame the NIC owns exclusively (allocated
    // in `probe`, never freed; a transmit frame is written only while it is reserved, off the
    // free list and not yet on the device: see `send_with`); it is identity-mapped RAM of
    // PAGE_BYTES.
    unsafe { core::slice::from_raw_parts_mut(frame as *mut u8, PAGE_BYTES) }
}

impl Nic {
    /// The NIC's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The PIC input (IRQ) the NIC interrupts on, if the firmware routed one.
    pub fn irq(&self) -> Option<u8> {
        self.irq
    }

    /// Acknowledges the device's interrupt (reading the ISR status lowers its INTx line).
    pub fn acknowledge_interrupt(&mut self) {
        self.raw.ack_interrupt();
    }

    /// Queues one frame on the device for `sender`, without waiting for the device to send
    /// it (its buffer is taken back by a later [`Nic::take_back_sent`]).
    pub fn send(&mut self, frame: &[u8], sender: Sender) -> Result<(), SendRefusal> {
        let written = self.send_with(sender, frame.len(), |buffer| {
            buffer.copy_from_slice(frame);
            Ok::<(), core::convert::Infallible>(())
        });
        written.map_err(|unsent| match unsent {
            Unsent::QueueFull => SendRefusal::QueueFull,
            Unsent::TooLong | Unsent::Driver => SendRefusal::Refused,
            Unsent::Fill(never) => match never {},
        })
    }

    /// Queues a frame of `length_bytes` that `fill` writes straight into a transmit buffer
    /// (behind the virtio header): the one copy of it the kernel makes. The buffer is
    /// reserved for `sender` before `fill` runs and released if `fill` refuses or the frame
    /// does not fit, so a refused frame holds no buffer; `fill` sees only the frame's bytes,
    /// and nothing else writes the buffer until the device has sent it.
    pub fn send_with<E>(
        &mut self,
        sender: Sender,
        length_bytes: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), Unsent<E>> {
        self.take_back_sent();
        let reservation = self
            .tx_buffers
            .reserve(sender)
            .map_err(|QueueFull| Unsent::QueueFull)?;
        let buffer = buffer(self.tx_frames[usize::from(reservation.buffer)]);
        let fits = match self.raw.fill_buffer_header(buffer) {
            Ok(header) => header
                .checked_add(length_bytes)
                .filter(|length| *length <= buffer.len()),
            Err(_) => None,
        };
        let Some(length) = fits else {
            self.tx_buffers.release(reservation);
            return Err(Unsent::TooLong);
        };
        if let Err(refused) = fill(&mut buffer[length - length_bytes..length]) {
            self.tx_buffers.release(reservation);
            return Err(Unsent::Fill(refused));
        }
        // SAFETY: the buffer is reserved (taken off the free list above): nothing reads or
        // writes it from here until the device gives its token back and `take_back_sent`
        // frees it (or, if the driver refuses it, we release it below, never queued).
        let token = match unsafe { self.raw.transmit_begin(&buffer[..length]) } {
            Ok(token) => token,
            Err(_) => {
                self.tx_buffers.release(reservation);
                return Err(Unsent::Driver);
            }
        };
        // The driver hands out each descriptor once until it is completed.
        self.tx_buffers
            .commit(reservation, token, length as u16)
            .expect("a fresh transmit token");
        Ok(())
    }

    /// Takes back every transmit buffer the device is done with (called on every send and
    /// every receive poll, so buffers come back even while nobody sends).
    pub fn take_back_sent(&mut self) {
        while let Some(token) = self.raw.poll_transmit() {
            // The device returns only tokens `transmit_begin` gave out, each once, and
            // `send_with` commits each before it returns.
            let in_flight = self
                .tx_buffers
                .complete(token)
                .expect("virtio-net completed a transmit token the kernel queued");
            let buffer = buffer(self.tx_frames[usize::from(in_flight.buffer)]);
            // SAFETY: the same buffer and length `send_with` passed to `transmit_begin` for
            // `token`.
            let completed = unsafe {
                self.raw
                    .transmit_complete(token, &buffer[..usize::from(in_flight.length_bytes)])
            };
            completed.expect("completing the transmit the device reported done (peeked above)");
        }
    }

    /// Whether a received frame is waiting.
    pub fn has_received(&self) -> bool {
        self.raw.poll_receive().is_some()
    }

    /// Takes one received frame, hands its bytes to `deliver`, and reposts the buffer.
    /// Returns `false` when nothing was waiting.
    pub fn receive(&mut self, deliver: impl FnOnce(&[u8])) -> bool {
        let Some(token) = self.raw.poll_receive() else {
            return false;
        };
        let frame = self.rx_frames[usize::from(token)];
        let rx = buffer(frame);
        // SAFETY: `rx` is the buffer posted with `token` (the frame recorded for it).
        let (header_bytes, length) =
            unsafe { self.raw.receive_complete(token, rx) }.expect("a used buffer");
        deliver(&rx[header_bytes..header_bytes + length]);
        // SAFETY: as in probe: the frame goes back to the device, which owns it again.
        let again = unsafe { self.raw.receive_begin(buffer(frame)) }.expect("reposting");
        self.rx_frames[usize::from(again)] = frame;
        true
    }
}
