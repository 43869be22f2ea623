/** Byte order of the machine running this code, for formats that store a fixed order. */

/** True on little-endian hosts (typed arrays use host order; NIfTI and Zarr name theirs). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
