#!/bin/sh
# Print an image's flash and SRAM use and fail if it does not fit the part: size.sh <board> <elf>
board=$1; elf=$2
syms=$(arm-none-eabi-nm "$elf")
sym() { echo $((0x$(echo "$syms" | awk -v s="$1" '$3 == s { print $1 }'))); }
flash=$(sym __flash_used); rt=$(sym __runtime_ram_used)
flash_total=$(sym __flash_total); sram_total=$(sym __sram_total)
arena=$(( $(sym __arena_end) - $(sym __arena_start) ))
ws_start=$(sym __wstore_start); ws=$(( $(sym __wstore_end) - ws_start ))
sram=$(( 16384 + arena )); where="flash region (RAM under QEMU)"; extra=""
if [ "$ws_start" -ge $((0x20000000)) ]; then sram=$(( sram + ws )); where="SRAM"; extra=" + weights $((ws / 1024)) KiB"; fi
printf '%-14s flash %6d B of %4d KiB | SRAM %3d KiB of %3d KiB = runtime reserve 16 KiB (%d B used) + arena %d KiB%s | weights store %d KiB in %s\n' \
  "$board" "$flash" $((flash_total / 1024)) $((sram / 1024)) $((sram_total / 1024)) "$rt" $((arena / 1024)) "$extra" $((ws / 1024)) "$where"
if [ "$flash" -gt "$flash_total" ] || [ "$sram" -gt "$sram_total" ]; then echo "$board: image does not fit the part" >&2; exit 1; fi
