"""Video routes: strict validation of generation requests, and time-driven status."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from watcher.sandbox.context import Context
from watcher.sandbox.envelopes import CODE_OK, json_response
from watcher.sandbox.exchange import Exchange, Response
from watcher.sandbox.media import VIDEO_DURATION_SECONDS
from watcher.sandbox.state import VideoRecord
from watcher.sandbox.validation import ApiError, Fields, invalid, read_json_object

PUBLIC_ASSET_HOST = "files.heygen.ai"
# HeyGen's schema gives `waiting` as the first status of a new v3 video.
V3_FIRST_STATUS = "waiting"
ASSET_PATH = re.compile(r"/asset/([^/]+)")
MAX_DIMENSION = 4096
MEDIA_KINDS = ("image", "video", "audio")
V3_VIDEO_TYPES = ("avatar", "image", "cinematic_avatar", "studio")
ASPECT_RATIOS = ("16:9", "9:16", "4:5", "5:4", "1:1", "auto")
NOT_AVAILABLE = "asset_not_available"


class AssetCheck:
    """Refuses references to assets that were never stored (or are of the wrong kind)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._storage_netloc = urlsplit(ctx.storage_url).netloc

    def asset_id(self, fields: Fields, key: str, kind: str) -> None:
        self._require(fields.text(key), fields.param(key), kind)

    def url(self, fields: Fields, key: str, kind: str) -> None:
        split = urlsplit(fields.url(key))
        match = ASSET_PATH.fullmatch(split.path)
        if match and split.netloc in (PUBLIC_ASSET_HOST, self._storage_netloc):
            self._require(match.group(1), fields.param(key), kind)

    def url_or_id(self, fields: Fields, id_key: str, kind: str) -> None:
        """Exactly one of ``url`` and ``id_key``."""
        if fields.one_of(("url", id_key)) == "url":
            self.url(fields, "url", kind)
        else:
            self.asset_id(fields, id_key, kind)

    def _require(self, asset_id: str, param: str, kind: str) -> None:
        asset = self._ctx.state.usable(asset_id)
        if asset is None and self._ctx.state.stored(asset_id) is not None:
            # Stored but not completed, or still being ingested: HeyGen's hint for this code.
            message = f"asset {asset_id} is not available yet: it may still be processing"
            raise ApiError(400, message, NOT_AVAILABLE, param)
        if asset is None:
            raise ApiError(400, f"asset not found: {asset_id}", NOT_AVAILABLE, param)
        if not asset.content_type.startswith(f"{kind}/"):
            raise invalid(param, f"names a {asset.content_type} asset where {kind} is needed")


# Validation ----------------------------------------------------------------------------------


def check_dimension(fields: Fields) -> None:
    if fields.has("dimension"):
        dimension = fields.object("dimension")
        for side in ("width", "height"):
            value = dimension.integer(side, minimum=1) or 0
            if value > MAX_DIMENSION:
                raise invalid(dimension.param(side), f"must be at most {MAX_DIMENSION}")


def check_optional_strings(fields: Fields, *keys: str) -> None:
    for key in keys:
        fields.string(key, required=False, non_empty=False)


def check_character(character: Fields) -> None:
    if character.choice("type", ("avatar", "talking_photo")) == "avatar":
        character.text("avatar_id")
        character.string("avatar_style", required=False)
    else:
        character.text("talking_photo_id")


def check_voice(voice: Fields, assets: AssetCheck) -> None:
    if voice.choice("type", ("text", "audio")) == "text":
        voice.text("input_text")
        voice.text("voice_id")
    elif voice.one_of(("audio_url", "audio_asset_id")) == "audio_url":
        assets.url(voice, "audio_url", "audio")
    else:
        assets.asset_id(voice, "audio_asset_id", "audio")


def check_background(background: Fields, assets: AssetCheck) -> None:
    kind = background.choice("type", ("color", "image", "video"))
    if kind == "color":
        background.text("value")
    else:
        assets.url_or_id(background, f"{kind}_asset_id", kind)


def check_v2_generate(body: dict[str, Any], assets: AssetCheck) -> None:
    fields = Fields(body)
    inputs = fields.array("video_inputs")
    if not inputs:
        raise invalid("video_inputs", "must be a non-empty list")
    for index, raw in enumerate(inputs):
        item = Fields.of(raw, f"video_inputs[{index}]")
        check_character(item.object("character"))
        check_voice(item.object("voice"), assets)
        if item.has("background"):
            check_background(item.object("background"), assets)
    check_dimension(fields)
    check_optional_strings(fields, "title", "callback_id")
    fields.boolean("test")


def check_variable(name: str, variable: Fields, assets: AssetCheck) -> None:
    if variable.text("name") != name:
        raise invalid(variable.param("name"), f"must equal its key {name!r}")
    kind = variable.choice("type", ("text", *MEDIA_KINDS))
    properties = variable.object("properties")
    if kind == "text":
        properties.string("content", non_empty=False)
        return
    if not (properties.has("url") or properties.has("asset_id")):
        raise invalid(properties.param("url"), f"or asset_id is required for a {kind} variable")
    if properties.has("url"):
        assets.url(properties, "url", kind)
    if properties.has("asset_id"):
        assets.asset_id(properties, "asset_id", kind)
    properties.string("fit", required=False)


def check_template_generate(body: dict[str, Any], assets: AssetCheck) -> None:
    fields = Fields(body)
    variables = fields.object("variables")
    for name, raw in variables.data.items():
        check_variable(name, Fields.of(raw, variables.param(name)), assets)
    check_dimension(fields)
    check_optional_strings(fields, "title", "callback_id")
    fields.boolean("test")


def check_v3_image(image: Fields, assets: AssetCheck) -> None:
    """``{"type": "url", "url"}`` or ``{"type": "asset_id", "asset_id"}``."""
    if image.choice("type", ("url", "asset_id")) == "url":
        assets.url(image, "url", "image")
    else:
        assets.asset_id(image, "asset_id", "image")


def check_v3_video(body: dict[str, Any], assets: AssetCheck) -> None:
    """A union discriminated by ``type``; the flat shape without it is refused."""
    fields = Fields(body)
    kind = fields.choice("type", V3_VIDEO_TYPES)
    if kind in ("avatar", "cinematic_avatar"):
        fields.text("avatar_id")
    elif kind == "image":
        check_v3_image(fields.object("image"), assets)
    audio = fields.one_of(("script", "audio_asset_id", "audio_url"))
    if audio == "script":
        fields.text("script")
        fields.text("voice_id")
    elif audio == "audio_asset_id":
        assets.asset_id(fields, "audio_asset_id", "audio")
    else:
        assets.url(fields, "audio_url", "audio")
    if fields.has("background"):
        background = fields.object("background")
        if background.choice("type", ("color", "image")) == "color":
            background.text("value")
        else:
            assets.url_or_id(background, "asset_id", "image")
    if fields.has("aspect_ratio"):
        fields.choice("aspect_ratio", ASPECT_RATIOS)
    check_optional_strings(fields, "resolution", "title", "callback_id")


# Routes --------------------------------------------------------------------------------------


def generate_v2(ctx: Context, exchange: Exchange) -> Response:
    body = read_json_object(exchange)
    check_v2_generate(body, AssetCheck(ctx))
    video = ctx.state.new_video(exchange.path, body)
    return json_response(200, {"error": None, "data": {"video_id": video.video_id}})


def generate_template(ctx: Context, exchange: Exchange, template_id: str) -> Response:
    body = read_json_object(exchange)
    check_template_generate(body, AssetCheck(ctx))
    video = ctx.state.new_video(exchange.path, body)
    return json_response(200, {"error": None, "data": {"video_id": video.video_id}})


def create_v3_video(ctx: Context, exchange: Exchange) -> Response:
    """No idempotency key is documented for video creation: every request creates a video."""
    body = read_json_object(exchange)
    check_v3_video(body, AssetCheck(ctx))
    video = ctx.state.new_video(exchange.path, body, first_status=V3_FIRST_STATUS)
    data = {"video_id": video.video_id, "status": V3_FIRST_STATUS, "output_format": "mp4"}
    return json_response(201, {"data": data})


def generate_v3_template(ctx: Context, exchange: Exchange, template_id: str) -> Response:
    """``POST /v3/templates/{id}`` answers the Video resource: the id is ``data.id``.

    The request body is not in the contract we hold; the strictest reasonable reading is the
    v2 template body (``variables`` required, each checked the same way)."""
    body = read_json_object(exchange)
    check_template_generate(body, AssetCheck(ctx))
    video = ctx.state.new_video(exchange.path, body, first_status=V3_FIRST_STATUS)
    return json_response(201, {"data": v3_video_resource(ctx, video)})


def find_video(ctx: Context, video_id: str) -> VideoRecord:
    video = ctx.state.video(video_id)
    if video is None:
        raise ApiError(404, f"video not found: {video_id}", "not_found")
    return video


def video_view(ctx: Context, video: VideoRecord) -> dict[str, Any]:
    status = ctx.state.video_status(video)
    view: dict[str, Any] = {"id": video.video_id, "status": status}
    if status == "completed":
        # Signed afresh on every read, like HeyGen: an expired link is cured by asking again.
        view["video_url"] = ctx.download_url(f"/videos/{video.video_id}.mp4")
        view["thumbnail_url"] = ctx.download_url(f"/videos/{video.video_id}.png")
        view["duration"] = VIDEO_DURATION_SECONDS
    elif status == "failed":
        view["failure_code"] = video.failure_code
        view["failure_message"] = video.failure_message
    return view


def get_v2_video(ctx: Context, exchange: Exchange, video_id: str) -> Response:
    view = video_view(ctx, find_video(ctx, video_id))
    return json_response(200, {"error": None, "data": view})


V3_RESOURCE_FIELDS = (
    "video_url",
    "thumbnail_url",
    "duration",
    "failure_code",
    "failure_message",
    "captioned_video_url",
    "completed_at",
)


def v3_video_resource(ctx: Context, video: VideoRecord) -> dict[str, Any]:
    """The v3 Video resource: every documented field present, null when it does not apply."""
    view = video_view(ctx, video)
    resource = {"id": view["id"], "status": view["status"]}
    resource.update({name: view.get(name) for name in V3_RESOURCE_FIELDS})
    return resource


def get_v3_video(ctx: Context, exchange: Exchange, video_id: str) -> Response:
    return json_response(200, {"data": v3_video_resource(ctx, find_video(ctx, video_id))})


def get_v1_status(ctx: Context, exchange: Exchange) -> Response:
    """The old envelope; a failure's reason is ``data.error``, an object."""
    values = exchange.params.get("video_id", [])
    if len(values) != 1 or not values[0]:
        raise invalid("video_id", "is required once in the query string")
    view = video_view(ctx, find_video(ctx, values[0]))
    code, message = view.pop("failure_code", None), view.pop("failure_message", None)
    if view["status"] == "failed":
        view["error"] = {"code": code, "message": message}
    return json_response(200, {"code": CODE_OK, "data": view, "message": "success"})
