#!/bin/sh
# Bring-up build of the testbed and its stand-in images, until `cargo xtask` exists.
# Writes $OUT/flash.bin (default /work/targets/testbed/bringup): testbed at 0, then slots per
# testbed-layout: SP package (SPKG v2) at 0x200000, NW image at 0x1000000, boot config at
# 0x2000000. SP_IMAGE / NW_IMAGE / SP_MANIFEST override the stand-ins with other flat binaries;
# BOOT_EXTRA adds boot-config lines (e.g. BOOT_EXTRA=lend-enforcement=off).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-/work/targets/testbed}
OUT=${OUT:-$TARGET_DIR/bringup}
SCENARIO=${SCENARIO:-messaging}
BOOT_EXTRA=${BOOT_EXTRA:-}
mkdir -p "$OUT"

(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build -q -p testbed --release \
	--target aarch64-unknown-none -j2)
aarch64-linux-gnu-objcopy -O binary "$TARGET_DIR/aarch64-unknown-none/release/testbed" "$OUT/testbed.bin"

dtc -q -I dts -O dtb -o "$HERE/sp-manifest.dtb" "$HERE/sp-manifest.dts"
sed 's/exception-level = <2>/exception-level = <1>/' "$HERE/sp-manifest.dts" |
	dtc -q -I dts -O dtb -o "$HERE/test-bad-el.dtb" -

if [ -z "${SP_IMAGE:-}" ]; then
	aarch64-linux-gnu-gcc -nostdlib -static -Wl,-Ttext=0x0e304000 -Wl,--build-id=none \
		-o "$OUT/sp-stub.elf" "$HERE/sp-stub.S"
	aarch64-linux-gnu-objcopy -O binary "$OUT/sp-stub.elf" "$OUT/sp-stub.bin"
	SP_IMAGE="$OUT/sp-stub.bin"
fi
if [ -z "${NW_IMAGE:-}" ]; then
	rustc --edition 2024 --target aarch64-unknown-none -C opt-level=2 -C panic=abort \
		-C link-arg=-T"$HERE/nw-stub.ld" -o "$OUT/nw-stub.elf" "$HERE/nw-stub.rs"
	aarch64-linux-gnu-objcopy -O binary "$OUT/nw-stub.elf" "$OUT/nw-stub.bin"
	NW_IMAGE="$OUT/nw-stub.bin"
fi
SP_MANIFEST=${SP_MANIFEST:-$HERE/sp-manifest.dtb}

python3 - "$OUT/testbed.bin" "$SP_MANIFEST" "$SP_IMAGE" "$NW_IMAGE" "$SCENARIO" "$OUT/flash.bin" "$BOOT_EXTRA" <<'PY'
import struct, sys
testbed, manifest, sp, nw, scenario, out, extra = sys.argv[1:]
rd = lambda p: open(p, 'rb').read()
def slot(payload):
    return b'FSLT' + struct.pack('<III', len(payload), 0, 0) + payload
pm, img = rd(manifest), rd(sp)
pkg = bytearray(0x4000)
pkg[0:24] = struct.pack('<6I', 0x474b5053, 2, 0x1000, len(pm), 0x4000, len(img))
pkg[0x1000:0x1000 + len(pm)] = pm
pkg += img
flash = bytearray(0x2001000)
tb = rd(testbed)
assert len(tb) <= 0x200000, 'testbed too big'
flash[0:len(tb)] = tb
for off, payload in ((0x200000, bytes(pkg)), (0x1000000, rd(nw)),
                     (0x2000000, ('scenario=%s\n%s' % (scenario, extra + '\n' if extra else '')).encode())):
    s = slot(payload)
    flash[off:off + len(s)] = s
flash += bytes(0x4000000 - len(flash))  # QEMU wants the whole 64 MiB flash
open(out, 'wb').write(flash)
PY
echo "$OUT/flash.bin"
