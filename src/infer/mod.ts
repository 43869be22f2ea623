/**
 * Inference and evaluation: sliding-window prediction of whole volumes and OME-Zarr cases with
 * a checkpoint, and segmentation metrics.
 * @module
 */

export {
  type CasePrediction,
  DEFAULT_MEMORY_BUDGET,
  type LoadedModel,
  loadModel,
  ModelLoadError,
  predictCase,
  type PredictCaseOptions,
  type Prediction,
  type PredictionSummary,
  type PredictOptions,
  predictVolume,
} from "./predict.ts";
export {
  type CaseEvaluation,
  casesToEvaluate,
  evaluateDataset,
  type EvaluateOptions,
  type MeanMetrics,
  meanMetrics,
} from "./evaluate.ts";
export {
  type ClassMetrics,
  dicePerClass,
  hausdorffDistance,
  nanMean,
  segmentationMetrics,
} from "./metrics.ts";
export { SPACING_TOLERANCE } from "./resample.ts";
