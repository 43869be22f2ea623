/** `voxseg export`: an OME-Zarr case back to NIfTI, with the source file's geometry. */

import { parseNamedFlags } from "./args.ts";
import { writeNifti } from "../data/nifti.ts";
import { openCase } from "../data/ome_zarr/reader.ts";

const HELP = `voxseg export --case DIR/a.zarr [--labels] --out a.nii.gz

Writes a case's image (or, with --labels, its label map) as NIfTI-1, gzipped when OUT ends in
.gz. When the case came from NIfTI, the header geometry (qform, sform, codes, pixdim, units)
is restored exactly, so the export overlays the original in any viewer. --case may be a URL.`;

const FLAGS = {
  case: { type: "string" },
  labels: { type: "boolean" },
  out: { type: "string" },
} as const;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseNamedFlags(argv, FLAGS, HELP, ["case", "out"]);
  const reader = await openCase(String(values.case), { cacheBytes: 0 });
  const volume = values.labels ? await reader.readFullLabel() : await reader.readFullImage();
  await writeNifti(String(values.out), volume, { like: reader.nifti });
  const what = values.labels ? "label map" : `image (${reader.imageDtype})`;
  console.log(`wrote ${values.out}: ${what}, ${volume.shape.join("×")} voxels`);
  return 0;
}
