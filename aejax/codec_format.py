"""The codec's file: a fixed 31-byte header, then the range coder's payload.

    offset  size  field
         0     8  signature  89 41 45 43 0D 0A 1A 0A  ("\\x89AEC\\r\\n\\x1a\\n")
         8     1  format version, 1
         9     2  image height   (uint16, big-endian, as every field below)
        11     2  image width
        13     2  image channels
        15     8  identity: the first 8 bytes of the SHA-256 of the model's parameters,
                  its coding tables and its shapes (``identity``)
        23     4  payload length in bytes (uint32)
        27     4  CRC-32 (zlib's) of bytes 0–26 and the payload
        31     n  payload: the range coder's bytes (``entropy_coding``)

The signature is PNG's design: a byte above 127 catches a 7-bit channel, CR LF a
text-mode conversion, and ^Z stops a listing under DOS. The identity tells a string
of another model (another workdir, a sweep's other member, the same workdir trained
again) from a damaged one; the length tells truncation or extension apart from
corruption; the CRC covers every byte of the file but its own four.

``unpack`` checks all of it before the range decoder sees a byte, and refuses with a
``CodecFormatError`` that says what is wrong: the file is what ``pack`` wrote with
this identity and shape, or it is not decoded. docs/codec_format.md says the same.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Iterable

import numpy as np

SIGNATURE = b"\x89AEC\r\n\x1a\n"
VERSION = 1
IDENTITY_BYTES = 8
_LAYOUT = struct.Struct(f">8sB3H{IDENTITY_BYTES}sI")  # all but the CRC
HEADER_SIZE = _LAYOUT.size + 4  # 31


class CodecFormatError(ValueError):
  """A byte string the codec did not write with this model: empty, not a codec
  file, another version, truncated or extended, corrupted, or another model's."""


def identity(arrays: Iterable[tuple[str, np.ndarray]]) -> bytes:
  """The first ``IDENTITY_BYTES`` of the SHA-256 of named arrays (the model's
  parameters, its tables, its shapes): each name, dtype, shape and C-order bytes."""
  digest = hashlib.sha256()
  for name, array in arrays:
    array = np.ascontiguousarray(np.asarray(array))
    digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.reshape(-1).view(np.uint8).data)
  return digest.digest()[:IDENTITY_BYTES]


def pack(payload: bytes, model_identity: bytes, image_shape: tuple[int, ...]) -> bytes:
  """The file of ``payload``: header + payload."""
  fields = _LAYOUT.pack(SIGNATURE, VERSION, *image_shape, model_identity, len(payload))
  return fields + struct.pack(">I", zlib.crc32(payload, zlib.crc32(fields))) + payload


def unpack(data: bytes, model_identity: bytes, image_shape: tuple[int, ...],
           max_payload: int, name: str = "the string") -> bytes:
  """The payload of a file ``pack`` wrote with ``model_identity`` and ``image_shape``;
  any other bytes raise ``CodecFormatError`` (one line, starting with ``name``).
  ``max_payload`` bounds the length a header may declare."""
  if not data:
    raise CodecFormatError(f"{name} is empty: no aejax codec file.")
  if data[:len(SIGNATURE)] != SIGNATURE:
    what = "starts like one but is cut short" if SIGNATURE.startswith(data) else (
        "does not start with its signature 89 41 45 43 0D 0A 1A 0A")
    raise CodecFormatError(f"{name} is not an aejax codec file: it {what}.")
  if len(data) < HEADER_SIZE:
    raise CodecFormatError(f"{name} is truncated: {len(data)} bytes, fewer than the "
                           f"{HEADER_SIZE}-byte header.")
  _, version, height, width, channels, found, length = _LAYOUT.unpack_from(data)
  (crc,) = struct.unpack_from(">I", data, _LAYOUT.size)
  if version != VERSION:
    raise CodecFormatError(f"{name} is codec format version {version}; this aejax reads "
                           f"version {VERSION}.")
  payload = data[HEADER_SIZE:]
  if length > max_payload:
    raise CodecFormatError(f"{name} declares a {length}-byte payload; this model's are at "
                           f"most {max_payload}: it is damaged.")
  if len(payload) != length:
    cut = "truncated" if len(payload) < length else "extended"
    raise CodecFormatError(f"{name} is {cut}: its header declares a {length}-byte payload "
                           f"and {len(payload)} bytes follow it.")
  if zlib.crc32(payload, zlib.crc32(data[:_LAYOUT.size])) != crc:
    raise CodecFormatError(f"{name} is corrupted: its CRC-32 does not match its bytes.")
  if found != model_identity:
    raise CodecFormatError(
        f"{name} was written by another model (identity {found.hex()}, this model's "
        f"{model_identity.hex()}): decode it with the workdir that encoded it.")
  if (height, width, channels) != tuple(image_shape):
    raise CodecFormatError(f"{name} holds a {height}×{width}×{channels} image; this model "
                           f"codes {'×'.join(map(str, image_shape))}.")
  return payload
