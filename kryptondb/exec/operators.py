"""The physical operators, by plan node kind: ``fn(node, inputs, ctx) -> value``.

Each module of exec/ holds one family: sources (images, video frames, preprocessing),
inference (full, incremental video), occlusion (thin adapters over kryptondb/obe), results
(top-k, frame labels, INTO), catalog_ops (catalog statements, TUNE, SQL, COPY)."""

from __future__ import annotations

from kryptondb.exec import catalog_ops as c
from kryptondb.exec.inference import full_inference, incremental_video_inference, pick_class
from kryptondb.exec.occlusion import heatmap, materialize_views, occlusion_scan
from kryptondb.exec.results import frame_labels, store, top_k
from kryptondb.exec.sets import predict_images, recognize_videos
from kryptondb.exec.sources import load_image, preprocess, tensor_scan, video_scan
from kryptondb.plan.ops import Op

OPERATORS = {
    Op.LOAD_IMAGE: load_image, Op.TENSOR_SCAN: tensor_scan, Op.VIDEO_SCAN: video_scan,
    Op.PREPROCESS: preprocess,
    Op.FULL_INFERENCE: full_inference, Op.PICK_CLASS: pick_class,
    Op.INCREMENTAL_VIDEO_INFERENCE: incremental_video_inference,
    Op.NAIVE_OCCLUSION_SCAN: occlusion_scan, Op.INCREMENTAL_OCCLUSION_SCAN: occlusion_scan,
    Op.DRILL_DOWN: occlusion_scan, Op.MATERIALIZE_VIEWS: materialize_views,
    Op.HEATMAP: heatmap, Op.TOP_K: top_k, Op.FRAME_LABELS: frame_labels, Op.STORE_TABLE: store,
    Op.CREATE_MODEL: c.create_model, Op.LOAD_MEDIA: c.load_media,
    Op.SHOW_CATALOG: c.show_catalog, Op.TUNE: c.tune, Op.TUNE_VIDEO: c.tune_video,
    Op.DESCRIBE_MODEL: c.describe_model,
    Op.PREDICT_IMAGES: predict_images, Op.RECOGNIZE_VIDEOS: recognize_videos,
    Op.DROP: c.drop, Op.SQL: c.sql, Op.TABLE_SCAN: c.table_scan, Op.COPY: c.copy,
}
