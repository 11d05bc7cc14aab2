"""The editor worker's protocol: JSON lines on stdin/stdout, pixels in-band or in temporary files.

Version 2. Every message is one JSON object on one line (UTF-8, '\\n'-terminated) with a "type"
field, optionally followed by a binary frame (below). The editor (the GIMP plug-in, the CLI's
--worker) writes requests to the worker's stdin; the worker answers on stdout and writes nothing
else there (its logs go to stderr). Any command that carries stdin and stdout can start it, so
the worker may run on another machine (`ssh gpu-box /venv/bin/python -m
onnxstyle.plugin.worker`): pixels and style files sent in-band need no shared disk, and SSH
gives the authentication and encryption; nothing of ours listens on a port.

Versions. The worker speaks 1 and 2 and answers a "hello" in the highest version that is not
above the editor's, with that version's fields, so a version-1 editor (files only) keeps working
unchanged. An editor that needs version 2 and gets a version-1 answer (or an error refusing its
hello's "files": a version-1 worker) says in one line which side to update.

Frames. A message whose JSON object has "frame": N is followed, right after its '\\n', by exactly
N bytes. The framing is read before anything else of a message: any JSON object may declare
one, and the worker reads the N bytes even when it refuses the request (skipping them in small
pieces, never holding them), so the stream stays in step; a refused request is answered after
its frame. "frame" must be an integer 0..MAX_FRAME_BYTES: any other value leaves the worker no
way to find the next message, so it answers one "protocol" error and exits (status 2). A line
that is not a JSON object declares no frame (it is answered and skipped, as in version 1). A
stream that ends inside a frame is a dropped link: the worker ends as at EOF.

Why raw pixels in frames, not PNG: GIMP's Python has no numpy and encoding PNG in pure Python is
slow; raw pixels need no decoding on either side, and their size is known from the header
(width x height x channels x bytes, at most MAX_PIXELS) before a byte is read or allocated.
Style images travel as their files' bytes (already compressed), decoded by the worker in memory
with the same header-first bounds as files. Compressing a slow link is SSH's job (`ssh -C`).
One frame per message, its parts declared in the JSON: one read of a known size, no per-part
headers to parse.

Requests (editor -> worker)
  {"type": "hello", "protocol": 2, "files": {"path": ".../probe", "nonce": "<16-128 chars>"}}
      -> {"type": "hello", "protocol": 2, "onnxstyle": "0.1.0", "python": "...",
          "providers": ["CPUExecutionProvider", ...],
          "devices": [{"device", "provider", "available", "reason"}, ...],
          "files": true|false, "max_frame_bytes": N}
     Version 1's answer has "type", "protocol": 1, "onnxstyle", "python" and "providers".
     "files" (optional): the editor wrote the nonce into a file in its own temporary folder; the
     worker reads it (a regular file, at most NONCE_FILE_BYTES, opened without blocking) and
     answers "files": true only if it holds exactly the nonce: both sides see the same files, and
     paths (the fast local path) may be used instead of frames.
  {"type": "ping", "id"?: "p", "frame"?: N, "reply_bytes"?: M}
      -> {"type": "pong", "id", "bytes": N} (+ "frame": M and M zero bytes when M > 0)
     Measures the link (`onnxstyle gimp doctor`: round trip, upload and download MB/s).
  {"type": "stylize", "id": "job-1", "frame": N,     # "frame" only when parts are in-band
   "content": {"width": W, "height": H, "format": "rgba8",
               "path": ".../content.raw"  or  "bytes": W*H*4},   # a pixel file, or in the frame
   "output":  {"path": ".../result.raw"}  or  {"frame": true},  # a file, or the result's frame
   "styles":  [{"path": "style.jpg", "weight": 1.0}            # image files, or their bytes:
               or {"bytes": B, "name": "style.jpg", "weight": 1.0}, ...],  # weights relative
   "options": {"preset": "draft", "strength": 1.0, "max_size": 512,
               "preserve_colors": "none", "device": "auto", "seed": 0, ...},
   "workdir": ".../tmpdir",                          # optional, ignored (see "Files")
   "sequence": {"id": "anim-1", "index": 0, "temporal_weight": W}}  # optional: a frame of an
                                                     # animation (below)
     The frame holds the in-band parts in request order (the content, then each in-band style)
     and is exactly the sum of their "bytes"; the content's "bytes" is W x H x channels x bytes; a
     style's "bytes" at most MAX_STYLE_BYTES; its "name" only labels messages. Options besides
     those above (ENGINE_OPTIONS: StyleOptions' own names; absent or null: the preset's): steps,
     scales, min_size, content_weight, style_weight, tv_weight, style_layer_weights (5 numbers),
     style_scale, init ("content" or "noise"), optimizer, learning_rate, pooling,
     tile_budget_mpx, tile_overlap.
      -> zero or more {"type": "progress", "id", "scale", "scales", "step", "steps",
                       "fraction", "loss", "eta_s", "text"}
      -> then exactly one of
         {"type": "result", "id", "path", "width", "height", "format", "seconds"}
         {"type": "result", "id", "width", "height", "format", "seconds", "frame": N}
             (output in-band: N = W x H x channels x bytes of the content's format follow)
         {"type": "error", "id", "kind", "message"}
         {"type": "cancelled", "id"}
     "sequence" (optional; without it a stylize is a picture on its own): the frames of an
     animation, styled without flicker (Ruder et al. 2016): each frame starts from the previous
     result warped by the optical flow, with a temporal loss of weight W (0 <= W <= WEIGHT_MAX; 0
     gives independent frames). "id": 1 to SEQUENCE_ID_CHARS characters; "index": an int >= 0.
     The worker keeps one sequence, the latest id: index 0 starts it afresh (dropping any
     other), with this request's styles, options and weight, the Gram targets computed once;
     index k continues it only if frame k-1 of that id was the last to finish, with the same
     styles, options, weight and content size; else one "protocol" error saying which index it
     expects (a content of another size: kind "image"). A frame that is cancelled or fails
     leaves the sequence at its previous frame: the same index may be sent again. The frame's
     progress and result are a stylize's; a result may carry "notes": [one-line texts] for the
     user, each sent once (a frame whose optical flow failed started unwarped). A result whose
     output can't be written ends the sequence (index 0 starts it again).
  {"type": "cancel", "id": "job-1"}     # "id" optional: cancels the running job, if any
  Closing stdin cancels the running job (within one engine step) and ends the worker.

Errors: "message" is one user-facing line; "kind" is an ErrorKind value. A request that is
not understood gets {"type": "error", "id": <its id or null>, "kind": "protocol", ...}: a line
that is not a JSON object, an unknown "type", field or option, a missing field, a value of the
wrong type (true/false is not a number), a number that is not finite or out of its range
(NUMBERS), a frame whose length does not match its parts. Every value is checked before any file
is opened, any frame byte kept or any model loaded; the content's pixel count before its frame is
read (kind "image").

One job at a time, one worker for many jobs. A second "stylize" while one runs gets kind "busy"
(its frame skipped), except right after a "cancel" of the running job: then it waits (one at
most; another gets "busy") and starts as soon as the cancelled job has sent its final message,
so an editor may send "cancel" and the next "stylize" at once and reads the old job's final
message first. A "stylize" sent after a job's final message never finds the worker busy. The
worker keeps the loaded model sessions between jobs, so a later job (another size, the same
device) starts at once. Progress lines come from the job's thread: a header and its frame are
written under one lock, so nothing comes between them.

Files: what the worker may touch. It reads the content pixel file and the style images a request
names, and writes the output file, never through a fixed temporary name: a new file made with
O_EXCL (mkstemp) beside the output, renamed over it when whole, removed on any failure or
cancel. It never removes or changes any other path a request names: "workdir" (sent by
version-1 editors) is accepted and ignored, and the editor removes its own temporary folder.
In-band parts stay in memory: the worker makes no folder of its own. Before any work the output
is checked: its folder exists and is writable, it is not a folder, if it exists it is a regular
file, and it is none of the inputs (links resolved); else kind "output". Inputs are opened without
blocking and must be regular files; the content must hold exactly width x height x channels x
bytes (at most MAX_PIXELS) before a byte is read.

Where each part lives (each module reads top to bottom):
  checks.py    ProtocolError, FrameError and the value checks (Number: type, range, finite)
  frames.py    the wire: limits, PIXEL_FORMATS, encode/decode of lines, frame_size, frame_length
  messages.py  the typed messages: requests (Hello, Ping, Cancel, Stylize), replies (HelloReply,
               Pong, Progress, Result, Cancelled, Error), ErrorKind, PROTOCOL_VERSION
  requests.py  NUMBERS, ENGINE_OPTIONS; parse_request (worker) and the *_message builders (editor)
  replies.py   the reply builders (worker) and parse_reply (editor)
Extending: a new request type is a dataclass in messages.py, a parser in REQUESTS and a builder;
a new reply a dataclass, a builder and a reader in REPLIES; a new numeric field an entry in
NUMBERS; an engine option a declaration in core/options.py.

Pixels (PIXEL_FORMATS), in files and frames alike: raw, row-major, top row first, no header, no
padding; interleaved channels R, G, B[, A]; sRGB-encoded values (not linear light); alpha
straight (not premultiplied). "rgba8"/"rgb8": one byte per channel, 0..255. "rgbaf32"/"rgbf32":
float32 little-endian per channel, nominally 0..1. These are GEGL's "R'G'B'A u8", "R'G'B' u8",
"R'G'B'A float" and "R'G'B' float". The worker carries alpha through unchanged and returns the
result in the content's format and size (a file written to a temporary name renamed into place,
so the output file exists only when complete; or the result's frame).
"""

from .checks import ID_MAX_CHARS, INT_MAX, FrameError, Number, ProtocolError
from .frames import (
    MAX_FRAME_BYTES,
    MAX_LINE_BYTES,
    MAX_STYLE_BYTES,
    PIXEL_FORMATS,
    decode,
    decode_object,
    encode,
    frame_length,
    frame_size,
)
from .messages import (
    ERROR_KINDS,
    PROTOCOL_VERSION,
    PROTOCOL_VERSIONS,
    Cancel,
    Cancelled,
    Error,
    ErrorKind,
    FilesProbe,
    Hello,
    HelloReply,
    JobOptions,
    Ping,
    PixelFile,
    Pong,
    Progress,
    Reply,
    Request,
    Result,
    SequenceFrame,
    StyleSpec,
    Stylize,
)
from .replies import (
    cancelled,
    error,
    hello_reply,
    parse_reply,
    pong,
    progress,
    progress_text,
    result,
)
from .requests import (
    ENGINE_CHOICES,
    ENGINE_NUMBERS,
    ENGINE_OPTIONS,
    MAX_PING_REPLY,
    NONCE_CHARS,
    NONCE_FILE_BYTES,
    NUMBERS,
    OPTION_NAMES,
    PRESERVE,
    SEED_MAX,
    SEQUENCE_ID_CHARS,
    STEPS_MAX,
    WEIGHT_MAX,
    cancel_message,
    hello_message,
    number,
    parse_request,
    ping_message,
    stylize_message,
)

__all__ = [
    "Cancel",
    "Cancelled",
    "ENGINE_CHOICES",
    "ENGINE_NUMBERS",
    "ENGINE_OPTIONS",
    "ERROR_KINDS",
    "Error",
    "ErrorKind",
    "FilesProbe",
    "FrameError",
    "Hello",
    "HelloReply",
    "ID_MAX_CHARS",
    "INT_MAX",
    "JobOptions",
    "MAX_FRAME_BYTES",
    "MAX_LINE_BYTES",
    "MAX_PING_REPLY",
    "MAX_STYLE_BYTES",
    "NONCE_CHARS",
    "NONCE_FILE_BYTES",
    "NUMBERS",
    "Number",
    "OPTION_NAMES",
    "PIXEL_FORMATS",
    "PRESERVE",
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSIONS",
    "Ping",
    "PixelFile",
    "Pong",
    "Progress",
    "ProtocolError",
    "Reply",
    "Request",
    "Result",
    "SEED_MAX",
    "SEQUENCE_ID_CHARS",
    "SequenceFrame",
    "STEPS_MAX",
    "StyleSpec",
    "Stylize",
    "WEIGHT_MAX",
    "cancel_message",
    "cancelled",
    "decode",
    "decode_object",
    "encode",
    "error",
    "frame_length",
    "frame_size",
    "hello_message",
    "hello_reply",
    "number",
    "parse_reply",
    "parse_request",
    "ping_message",
    "pong",
    "progress",
    "progress_text",
    "result",
    "stylize_message",
]
