/**
 * GPU types: the short, uppercase names (`H100`, `A100`, `RTX4090`) that job specs ask for and nodes advertise.
 *
 * Drivers report long product names that differ by form factor and memory ("NVIDIA A100-SXM4-80GB",
 * "NVIDIA A100 80GB PCIe"). Scheduling by type wants both to be `A100`; a job that needs the 80 GB part asks for
 * GPU memory instead (`gpus: {type: A100, memory: 80GB}`).
 */

/** Words that name the vendor or product line rather than the model. */
const VENDOR_WORDS = new Set(['NVIDIA', 'TESLA', 'GEFORCE', 'QUADRO', 'AMD', 'INSTINCT', 'RADEON', 'INTEL']);

/** Words after the model that describe form factor, memory or packaging: the type ends before them. */
const SUFFIX_WORD_RE = /^(SXM\d*|PCIE|HBM\d*E?|\d+(\.\d+)?[GMT]I?B?|NVL|NVLINK|GENERATION|EDITION|LAPTOP|MOBILE|GPU|MAX|Q|MIG.*|WITH|DESIGN|\d+C|OEM)$/;

/**
 * Turns a driver product name or a user-written type into a short type:
 * "NVIDIA H100 80GB HBM3" → "H100", "NVIDIA A100-SXM4-80GB" → "A100", "Tesla T4" → "T4",
 * "NVIDIA GeForce RTX 4090" → "RTX4090", "NVIDIA RTX A6000" → "A6000", "h100" → "H100".
 * Case-insensitive and idempotent (a short type maps to itself). Returns "" for blank input.
 */
export function normalizeGpuType(productOrType: string): string {
  const words = productOrType.trim().toUpperCase().split(/[\s_-]+/).filter((w) => w !== '');
  // Drop vendor words, but never the last word: a type named "TESLA" stays "TESLA".
  while (words.length > 1 && VENDOR_WORDS.has(words[0] ?? '')) words.shift();
  const first = words[0];
  const second = words[1];
  if (first === undefined) return '';
  if ((first === 'RTX' || first === 'GTX') && second !== undefined) {
    // "RTX 4090" names a consumer card by number: keep the prefix. "RTX A6000" names a workstation model: drop it.
    if (/^\d/.test(second)) words.splice(0, 2, first + second);
    else if (/^[A-Z]\d/.test(second)) words.shift();
  }
  const kept = [words[0] ?? ''];
  for (const word of words.slice(1)) {
    if (SUFFIX_WORD_RE.test(word)) break;
    kept.push(word);
  }
  return kept.join('');
}
