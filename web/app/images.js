// Images from a file picker, a drop or a paste, made ready for the API.
//
// Lambda takes at most 6 MB per synchronous request, and a binary body reaches it base64-encoded
// (4/3 larger), so an image above MAX_DIRECT_BYTES cannot go through POST /recognize or
// /predictions as it is. Signed in, it goes whole through a presigned upload (POST /uploads:
// the full-resolution original is kept for the history and for retraining); signed out, or
// when the upload cannot take it, it is scaled down here on a canvas (the model reads a
// 96 x 256 input anyway).

export const MAX_DIRECT_BYTES = 4 * 1024 * 1024;
const MAX_UPLOAD_BYTES = 20 * 1024 * 1024; // the drop function's limit (MAX_UPLOAD_BYTES)
const UPLOAD_TYPES = new Set(['image/png', 'image/jpeg', 'image/webp', 'image/bmp']); // POST /uploads
const MAX_SIDE = 2000; // px: the first downscale target
const MIN_SIDE = 400;
const LOSSLESS = new Set(['image/png', 'image/bmp', 'image/gif']);

export class ImageRejected extends Error {}

const megabytes = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function isInkml(file) {
  return file.name?.toLowerCase().endsWith('.inkml') || file.type === 'application/inkml+xml';
}

async function encode(bitmap, side, type) {
  const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff'; // a transparent PNG's background: paper, not black
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, type, 0.9));
}

/** A large image scaled down until it fits, or null when this browser cannot decode it. */
async function downscale(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return null;
  }
  const type = LOSSLESS.has(file.type) ? 'image/png' : 'image/jpeg';
  try {
    for (let side = MAX_SIDE; side >= MIN_SIDE; side = Math.floor(side * 0.7)) {
      const blob = await encode(bitmap, side, type);
      if (blob && blob.size <= MAX_DIRECT_BYTES) return blob;
    }
    return null;
  } finally {
    bitmap.close();
  }
}

/**
 * A file -> what to send: {inkml: text} | {image: Blob, note} | {upload: File, note} (a large
 * photo for the presigned upload; offered only when `canUpload`, i.e. signed in).
 */
export async function prepareFile(file, { canUpload = false } = {}) {
  const name = file.name || 'pasted image';
  if (isInkml(file)) {
    if (file.size > MAX_DIRECT_BYTES) throw new ImageRejected(`That InkML file is ${megabytes(file.size)}; the limit is ${megabytes(MAX_DIRECT_BYTES)}.`);
    return { inkml: await file.text(), note: file.name };
  }
  if (file.type && !file.type.startsWith('image/')) {
    throw new ImageRejected(`${file.name || 'That file'} is not an image (${file.type}): use PNG, JPEG, WebP, BMP or InkML.`);
  }
  if (file.size <= MAX_DIRECT_BYTES) {
    // Read now: a file on disk that changes before the request is sent would fail it.
    const image = new Blob([await file.arrayBuffer()], { type: file.type || 'application/octet-stream' });
    return { image, note: `${name} · ${megabytes(file.size)}` };
  }
  if (canUpload && file.size <= MAX_UPLOAD_BYTES && UPLOAD_TYPES.has(file.type)) {
    return { upload: file, note: `${name} · ${megabytes(file.size)}, uploaded whole` };
  }
  const smaller = await downscale(file);
  if (smaller) {
    return { image: smaller, note: `${name}: scaled down from ${megabytes(file.size)} to ${megabytes(smaller.size)}` };
  }
  throw new ImageRejected(
    `${name} is ${megabytes(file.size)} and this browser cannot scale it down: ` +
      (canUpload ? `the largest upload is ${megabytes(MAX_UPLOAD_BYTES)}; crop it or save it as JPEG.` : 'sign in to upload large photos, or crop it.'),
  );
}

/** The first image (or InkML file) in a drop or a paste, if any. */
export function fileFrom(dataTransfer) {
  if (!dataTransfer) return null;
  for (const file of dataTransfer.files || []) {
    if (file.type.startsWith('image/') || isInkml(file)) return file;
  }
  for (const item of dataTransfer.items || []) {
    if (item.kind === 'file' && item.type.startsWith('image/')) return item.getAsFile();
  }
  return null;
}
