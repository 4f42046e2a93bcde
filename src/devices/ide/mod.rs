//! PIIX3 IDE: ATA disks, ATAPI CD-ROM, bus-master DMA.

pub mod atapi;
