#!/bin/sh
# Print an image's flash and SRAM use: size.sh <board> <elf>
board=$1; elf=$2
sym() { echo $((0x$(arm-none-eabi-nm "$elf" | awk -v s="$1" '$3 == s { print $1 }'))); }
flash=$(sym __flash_used); rt=$(sym __runtime_ram_used)
arena=$(( $(sym __arena_end) - $(sym __arena_start) ))
ws_start=$(sym __wstore_start); ws=$(( $(sym __wstore_end) - ws_start ))
sram=$(( 16384 + arena )); where="the flash region (RAM under QEMU)"
if [ "$ws_start" -ge $((0x20000000)) ]; then sram=$(( sram + ws )); where="SRAM"; fi
printf '%-14s flash: %d B code+data    SRAM: runtime %d B (of 16 KiB reserve) + arena %d KiB%s = %d KiB\n' \
  "$board" "$flash" "$rt" $((arena / 1024)) \
  "$( [ "$where" = SRAM ] && echo " + weights store $((ws / 1024)) KiB")" $((sram / 1024))
printf '%-14s weights store: %d KiB in %s\n' "" $((ws / 1024)) "$where"
