// The flat workgroup and thread indices of a grid that grid1d (src/gpu/kernel.ts) folded into
// x and y so no dimension exceeds the device limit. Part of every kernel with a workgroup size.
fn workgroupIndex(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

fn threadIndex(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return workgroupIndex(wid, nwg) * WG + lid;
}
