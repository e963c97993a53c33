//! PCI configuration space through the legacy I/O ports 0xCF8 (address) and 0xCFC (data).
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};
use x86_64::instructions::port::Port;

const ADDRESS_PORT: u16 = 0xcf8;
const DATA_PORT: u16 = 0xcfc;

/// Configuration mechanism #1. One CPU, and only the net driver uses it, during boot and
/// from the kernel with interrupts off, so the two-port sequence is never interleaved.
#[derive(Debug)]
pub struct PortConfigurationAccess;

fn address(device_function: DeviceFunction, register_offset: u8) -> u32 {
    0x8000_0000
        | u32::from(device_function.bus) << 16
        | u32::from(device_function.device) << 11
        | u32::from(device_function.function) << 8
        | u32::from(register_offset & 0xfc)
}

impl ConfigurationAccess for PortConfigurationAccess {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        let mut address_port = Port::<u32>::new(ADDRESS_PORT);
        let mut data_port = Port::<u32>::new(DATA_PORT);
        // SAFETY: 0xCF8/0xCFC are the PC's PCI configuration ports; selecting a register and
        // reading it has no effect on memory safety.
        unsafe {
            address_port.write(address(device_function, register_offset));
            data_port.read()
        }
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        let mut address_port = Port::<u32>::new(ADDRESS_PORT);
        let mut data_port = Port::<u32>::new(DATA_PORT);
        // SAFETY: as above; the callers (virtio-drivers) write only the command register and
        // capability fields of the virtio device the kernel drives.
        unsafe {
            address_port.write(address(device_function, register_offset));
            data_port.write(data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortConfigurationAccess
    }
}
