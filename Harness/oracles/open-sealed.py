#!/usr/bin/env python3
"""An independent reader of an encrypted vault's files (Docs/formats/vault.md, "Encryption at
rest"), written from the doc with Python's `cryptography` and the zstd CLI, used by the tests as
the outside judge of lifeboat's sealing.

  open-sealed.py layer FILE.layer KEYFILE
      one line per index entry: disk block lsn sha256-of-the-block
  open-sealed.py base DISKID.img DISKID.seal KEYFILE GROUPHEX DISKID
      one line per sealed block: block lsn sha256-of-the-plaintext
"""
import hashlib, struct, subprocess, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def hkdf(key, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def read_key(path):
    return bytes.fromhex(open(path).read().strip())


def layer(path, keyfile):
    key, data = read_key(keyfile), open(path, 'rb').read()
    assert data[:8] == b'LBLAYER1' and struct.unpack_from('<I', data, 8)[0] == 2, 'not a sealed layer'
    group = data[16:32]
    entries, index = struct.unpack_from('<QQ', data, 48)
    for i in range(entries):
        disk, in_frame, block, lsn, offset, length, _ = struct.unpack_from('<IIQQQII', data, index + 40 * i)
        sealed = data[offset:offset + length]
        frame_key = hkdf(key, sealed[:16], b'lifeboat layer frame v1')
        aad = group + struct.pack('<IQQ', disk, block - in_frame, lsn)
        frame = AESGCM(frame_key).decrypt(b'\0' * 12, sealed[16:], aad)
        plain = subprocess.run(['zstd', '-q', '-d', '-c'], input=frame, capture_output=True, check=True).stdout
        print(disk, block, lsn, hashlib.sha256(plain[4096 * in_frame:4096 * (in_frame + 1)]).hexdigest())


def base(image, seals, keyfile, group_hex, disk):
    key, img, sealfile = read_key(keyfile), open(image, 'rb').read(), open(seals, 'rb').read()
    base_key = hkdf(key, bytes.fromhex(group_hex), b'lifeboat base v1' + struct.pack('<I', int(disk)))
    for block in range(len(sealfile) // 24):
        entry = sealfile[24 * block:24 * block + 24]
        if entry == bytes(24):
            continue
        lsn, tag = struct.unpack_from('<Q', entry)[0], entry[8:]
        nonce = block.to_bytes(8, 'little')[:5] + lsn.to_bytes(8, 'little')[:7]
        plain = AESGCM(base_key).decrypt(nonce, img[4096 * block:4096 * (block + 1)] + tag, None)
        print(block, lsn, hashlib.sha256(plain).hexdigest())


if __name__ == '__main__':
    {'layer': layer, 'base': base}[sys.argv[1]](*sys.argv[2:])
