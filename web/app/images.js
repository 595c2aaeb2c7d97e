// @ts-check
// Images from a file picker, a drop or a paste, made ready for the API.
//
// The API takes a request body up to `limits.maxBodyBytes` (config.json, from template.yaml's
// MAX_BODY_BYTES: Lambda's 6 MB invocation payload holds it base64-encoded), so a larger image
// cannot go through POST /recognize or /predictions as it is. Signed in, it goes whole through
// a presigned upload (POST /uploads, up to `limits.maxUploadBytes`: the full-resolution
// original is kept for the history and for retraining); signed out, or when the upload cannot
// take it, it is scaled down here on a canvas (the model reads a 96 x 256 input anyway). An
// image of a type the API does not read (GIF, TIFF...) is redrawn as PNG or JPEG first.
import { sizeText } from './config.js';

const MAX_SIDE = 2000; // px: the first downscale target
const MIN_SIDE = 400;
const LOSSLESS = new Set(['image/png', 'image/bmp', 'image/gif', 'image/tiff']);

export class ImageRejected extends Error {}

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

/** An image redrawn, smaller until it fits `maxBytes`, or null when this browser cannot decode it. */
async function downscale(file, maxBytes) {
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
      if (blob && blob.size <= maxBytes) return blob;
    }
    return null;
  } finally {
    bitmap.close();
  }
}

/**
 * A file -> what to send: {inkml: text} | {image: Blob, note} | {upload: File, note} (a large
 * photo for the presigned upload; offered only when `canUpload`, i.e. signed in). `limits` are
 * config.json's (config.js).
 */
export async function prepareFile(file, { canUpload = false, limits }) {
  const { maxBodyBytes, maxUploadBytes } = limits;
  const readable = new Set(limits.imageTypes);
  const name = file.name || 'pasted image';
  if (isInkml(file)) {
    if (file.size > maxBodyBytes) throw new ImageRejected(`That InkML file is ${sizeText(file.size)}; the limit is ${sizeText(maxBodyBytes)}.`);
    return { inkml: await file.text(), note: file.name };
  }
  if (file.type && !file.type.startsWith('image/')) {
    throw new ImageRejected(`${file.name || 'That file'} is not an image (${file.type}): use ${typeNames(limits.imageTypes, 'InkML')}.`);
  }
  const asIs = !file.type || readable.has(file.type); // an unlabelled file: the API sniffs it
  if (asIs && file.size <= maxBodyBytes) {
    // Read now: a file on disk that changes before the request is sent would fail it.
    const image = new Blob([await file.arrayBuffer()], { type: file.type || 'application/octet-stream' });
    return { image, note: `${name} · ${sizeText(file.size)}` };
  }
  if (canUpload && file.size > maxBodyBytes && file.size <= maxUploadBytes && readable.has(file.type)) {
    return { upload: file, note: `${name} · ${sizeText(file.size)}, uploaded whole` };
  }
  const smaller = await downscale(file, maxBodyBytes);
  if (smaller && !asIs) {
    return { image: smaller, note: `${name}: converted to ${smaller.type === 'image/png' ? 'PNG' : 'JPEG'}, ${sizeText(smaller.size)}` };
  }
  if (smaller) {
    return { image: smaller, note: `${name}: scaled down from ${sizeText(file.size)} to ${sizeText(smaller.size)}` };
  }
  if (!asIs) throw new ImageRejected(`This browser cannot read ${name} (${file.type}): use ${typeNames(limits.imageTypes, 'InkML')}.`);
  throw new ImageRejected(
    `${name} is ${sizeText(file.size)} and this browser cannot scale it down: ` +
      (canUpload ? `the largest upload is ${sizeText(maxUploadBytes)}; crop it or save it as JPEG.` : 'sign in to upload large photos, or crop it.'),
  );
}

/** (['image/png', 'image/webp'], 'InkML') -> "PNG, WebP or InkML": types as people name them. */
export function typeNames(types, ...more) {
  const names = [...types.map((t) => (t === 'image/webp' ? 'WebP' : t.replace(/^image\//, '').toUpperCase())), ...more];
  return names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names.at(-1)}` : names.join('');
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
