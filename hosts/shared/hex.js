// Bytes as lowercase hex and back, for result lines and host-call tables,
// without Node's Buffer, so that both platforms share them.

const DIGITS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toHex(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i++) text += DIGITS[bytes[i]];
  return text;
}

/**
 * The bytes of `text`, which the caller has checked is hex of even length.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function fromHex(text) {
  const out = new Uint8Array(text.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}
