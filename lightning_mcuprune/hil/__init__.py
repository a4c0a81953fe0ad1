"""Host side of hardware-in-the-loop: serial link, protocol, emulated and real boards."""
