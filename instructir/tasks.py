"""The task registry: the one place that names the restoration tasks.

Every other module looks tasks up here. A task has a stable integer id (stored in corpora, datasets and the
model's intent classifier, so never renumber), a description that tells an LLM what the requests are about,
hand-written seed requests in many registers, the names of the degradations that produce its training pairs,
situations: what went wrong with a photo and why, which attribute-conditioned generation draws one of per call, and
opposites: regular expressions (case-insensitive) for a request that asks for the opposite of the task or says the
photo has the opposite problem ("darken it", "too bright" for low light), which the filter's opposite stage drops.
``keeps_mean`` says the task's damage keeps the photo's mean colour (a blur kernel sums to one, a resampling
averages), so a restorer may hold its output to the input's mean (``Restorer(keep_mean=True)``).
``global_colour`` says the task's damage maps every pixel's colour through one function of the whole photo (a bad
retouch), so a restorer's learned colour stage may undo it (``Restorer(colour_stage=...)``, ``model/colour.py``).

The ids of the first seven tasks follow the class order of the official InstructIR text head
(noise, blur, rain, haze, low light, super-resolution, enhancement), so an official checkpoint's intent logits
index this registry directly.

Adding a task, say JPEG artefact removal, is one entry in ``_TASKS`` below (next free id, a description, 10-15
seeds) plus its degradation in ``instructir.datasets``::

    Task(
        id=8,
        name="dejpeg",
        label="JPEG artefact removal",
        description="remove blocky JPEG compression artefacts, ringing and colour banding",
        seeds=("get rid of the blocky jpeg artifacts", ...),
        degradations=("jpeg",),
    )
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One restoration task: what it is called, how an LLM should understand it, and what makes its data."""

    id: int
    name: str
    label: str
    description: str
    seeds: tuple[str, ...]
    degradations: tuple[str, ...]
    situations: tuple[str, ...] = ()
    opposites: tuple[str, ...] = ()
    keeps_mean: bool = False
    global_colour: bool = False


_TASKS: tuple[Task, ...] = (
    Task(
        id=0,
        name="denoise",
        label="denoising",
        description="remove noise, grain, speckles or sensor noise from a photo, often taken at high ISO or at night",
        seeds=(
            "Remove the noise.",
            "Could you please clean up the grain in this photo?",
            "my pic is super grainy, fix it pls",
            "Apply denoising to this high-ISO shot without smearing the fine detail.",
            "I took this at a concert with my phone and it's full of coloured speckles, can you smooth them out?",
            "get rid of the nosie in this picture",
            "The sky looks sandy and speckled. Make it clean.",
            "reduce the sensor noise, keep the texture of the fabric",
            "ugh so much grain. clean it up",
            "This old scan has a lot of dotty noise all over it; I'd love a cleaner version for my grandmother.",
            "Denoise please, ISO 6400.",
            "Can you make the image less fuzzy-dotty? It looks like static on an old TV.",
        ),
        degradations=("gaussian_noise", "poisson_noise"),
        situations=(
            "taken on a phone at night, so it came out grainy",
            "shot at ISO 6400 indoors, full of coloured speckles",
            "an old film scan with heavy grain",
            "a concert shot in a dark hall, covered in noise",
            "a screenshot from a night-vision security camera, all static",
            "zoomed in on a phone in dim light, so it looks sandy",
            "taken with a cheap webcam in a dark room, noisy and speckled",
        ),
        opposites=(
            r"\badd (some |more |a little )?(noise|grain)\b",
            r"\benhance (the )?grain\b",
        ),
    ),
    Task(
        id=1,
        name="deblur",
        label="deblurring",
        description="sharpen a blurry photo: remove motion blur from a shaking camera or moving subject, or "
        "out-of-focus blur",
        seeds=(
            "Deblur this.",
            "Could you sharpen this photo? My hand shook when I pressed the shutter.",
            "its all blurry, make it sharp",
            "Remove the motion blur caused by the moving car.",
            "The kids were running and now everyone is a smudge. Can you fix the blur?",
            "please unblur my picture, the focus missed",
            "Correct the camera shake blur and recover the edges of the text on the sign.",
            "make it less blury plz",
            "I tried to photograph a hummingbird and it came out smeared. Any way to get it crisp?",
            "Recover sharp detail from this defocused portrait.",
            "The whole shot looks soft and out of focus, sharpen it up.",
            "fix the shaky blur",
        ),
        degradations=("gaussian_blur", "motion_blur"),
        situations=(
            "taken from a moving car, so everything is smeared",
            "the camera focused on the background, so the face is soft",
            "a hand-held shot in dim light that came out shaky",
            "the kids were running, so they are motion-blurred",
            "a photo of a document that is out of focus",
            "taken through binoculars and a bit blurry",
            "a sports shot where the player is a blur",
        ),
        opposites=(
            r"\bmake (it|this) (more )?blurr?y\b",
            r"\breduce (the )?sharpen",
            r"\bless sharp\b",
            r"\bremove (the )?sharp",
            r"\bblur the background\b",
        ),
        keeps_mean=True,
    ),
    Task(
        id=2,
        name="derain",
        label="rain removal",
        description="remove rain streaks or raindrops that cover a photo taken in the rain",
        seeds=(
            "Remove the rain.",
            "Could you erase the rain streaks from this street photo, please?",
            "too much rain in this pic, get rid of it",
            "Eliminate the diagonal rain streaks while keeping the background intact.",
            "We got caught in a storm on our trip and every photo has white lines of rain across it. Help!",
            "pls remove the rain drops from the picture",
            "Derain this image.",
            "The rain streaks hide my daughter's face, can you clean them off?",
            "get rid of the raain lines",
            "Make it look like it wasn't raining when I took this.",
            "Remove the heavy downpour streaks from the foreground.",
            "i want this photo without the rain",
        ),
        degradations=("rain",),
        situations=(
            "taken in a downpour, with rain streaks across the whole frame",
            "shot through a rainy window, with drops on the glass",
            "a street at night in the rain, with white streaks everywhere",
            "a wedding photo outdoors when a shower started",
            "a football match in heavy rain",
            "a car dashboard camera frame with raindrops and streaks",
        ),
        opposites=(r"\badd (some |more |a little )?rain\b",),
    ),
    Task(
        id=3,
        name="dehaze",
        label="dehazing",
        description="remove haze, fog, mist or smog that makes a photo washed out, grey and low in contrast",
        seeds=(
            "Remove the haze.",
            "Could you clear the fog out of this landscape photo?",
            "so hazy i cant see the mountains, fix pls",
            "Dehaze this image and restore the contrast of the distant buildings.",
            "We hiked all morning and the valley was full of mist, so the view in my photo is just grey. "
            "Can you bring it back?",
            "get rid of the smog in this city shot",
            "The picture looks washed out by fog; make the far trees visible again.",
            "remove the mist please",
            "plz dehase",
            "Clear the atmospheric haze without changing the colours too much.",
            "Take away the milky haze that covers everything.",
            "the skyline is all foggy, clean it",
        ),
        degradations=("haze",),
        situations=(
            "a mountain view on a foggy morning, grey and washed out",
            "a city skyline in smog, with no contrast",
            "a lake at dawn covered in mist",
            "a drone shot through haze, where the far hills vanish",
            "a beach photo on a humid day, milky and faded",
            "a forest in thick fog, where the trees are barely visible",
        ),
        opposites=(r"\badd (some |more |a little )?(haze|fog|mist)\b",),
    ),
    Task(
        id=4,
        name="lowlight",
        label="low-light enhancement",
        description="brighten a photo that is too dark or underexposed, taken at night or in poor light",
        seeds=(
            "Brighten this.",
            "Could you please lighten this photo? It came out way too dark.",
            "cant see anything its so dark lol",
            "Correct the underexposure and recover the detail in the shadows.",
            "I took this in a candlelit restaurant and everyone's faces are lost in the dark. Can you help?",
            "make it brighter pls",
            "The image is underexposed; raise the exposure but keep the colours natural.",
            "too dark, fix",
            "this picture is so dim, brigthen it up",
            "Enhance this low-light night shot.",
            "Lift the shadows, the room was barely lit.",
            "Turn up the light in this photo, it looks like it was taken at midnight.",
        ),
        degradations=("low_light",),
        situations=(
            "taken in a candlelit restaurant, far too dark",
            "a night street on a phone, underexposed",
            "an indoor party with the lights off, faces lost in shadow",
            "a backlit portrait where the face came out dark",
            "a sunset shot where the foreground is nearly black",
            "a basement photo with one weak bulb",
        ),
        opposites=(
            r"\bdarken\b",
            r"(?<!not )\btoo bright\b",
            r"\bover-?exposed\b",
            r"(?<!not )\btoo light\b",
            r"\btoo much light\b",
            r"\bbring (it|this|the \w+) (back )?down\b",
            r"\btone (it )?down\b",
            r"\bmake (it|this) (more )?dark(er)?\b",
            r"\bmore darkened\b",
        ),
    ),
    Task(
        id=5,
        name="superres",
        label="super-resolution",
        description="increase the resolution of a small, low-resolution or pixelated photo and add fine detail",
        seeds=(
            "Upscale this.",
            "Could you increase the resolution of this small photo so I can print it?",
            "its so pixelated, make it HD",
            "Apply 4x super-resolution and restore the fine detail.",
            "The only picture I have of my dad is a tiny thumbnail from an old website. Can you make it bigger "
            "and clearer?",
            "enlarge this image without it getting blocky",
            "make this low res pic high res",
            "Please upsample this to a higher resolution.",
            "too small and blocky, need a bigger version",
            "increse the resolution plz",
            "Turn this low-quality thumbnail into a sharp full-size photo.",
            "I need this image at double the size with crisp edges.",
        ),
        degradations=("bicubic_downsample",),
        situations=(
            "a tiny thumbnail saved from an old website",
            "a crop of a group photo that is now only a few pixels wide",
            "a picture sent over a messaging app that shrank it",
            "a low-resolution photo from a 2005 phone",
            "a small profile picture that needs printing at poster size",
            "a zoomed-in screenshot that turned blocky and pixelated",
        ),
        opposites=(
            r"\bsmaller\b",
            r"\bdown-?(scale|size|sample)",
            r"\bshrink\b",
            r"\b(reduce|decrease) (the |its )?(size|resolution)\b",
            r"\blower the (size|resolution)\b",
            r"\b(want|need) (a |it in )?lower resolution\b",
            r"\bin low resolution\b",
            r"\bto (a )?low(er)? res",
        ),
        keeps_mean=True,
    ),
    Task(
        id=6,
        name="enhance",
        label="photo enhancement",
        description="retouch a photo that is dull or badly edited: fix contrast, colours, saturation, white "
        "balance and tone so it looks professional",
        seeds=(
            "Enhance the colours.",
            "Could you make the colours in this photo look more natural, please?",
            "this looks so dull and flat, make the colors pop",
            "Improve the contrast and correct the white balance.",
            "My wedding photos came out with a weird yellow cast and washed-out colours. Could you retouch them?",
            "boost the saturation a bit",
            "Make it look like a professional edited it.",
            "the colours are off, fix the tint",
            "Increase the contrast, the photo looks faded.",
            "plz make the colurs more vibrant",
            "Give this landscape richer, more balanced tones.",
            "Retouch this portrait so the skin tones look right.",
        ),
        degradations=("retouch",),
        global_colour=True,
        situations=(
            "wedding photos with a yellow cast and washed-out colours",
            "a landscape that looks dull and flat",
            "an old print whose colours faded to brown",
            "a product photo with the wrong white balance",
            "a portrait where the skin tones look green",
            "a sunset shot that came out too bright and pale",
        ),
    ),
    Task(
        id=7,
        name="ambiguous",
        label="ambiguous request",
        description="a vague request to make a photo better that does not name any specific problem such as "
        "noise, blur, rain, haze, darkness, low resolution or colours",
        seeds=(
            "Make it pop.",
            "Could you make this photo look better, please?",
            "fix this pic",
            "Improve the overall quality of this image.",
            "My friend says my photos always look off. Can you make this one look good?",
            "make it nicer",
            "Something is wrong with this picture, please repair it.",
            "Restore this photo.",
            "can u make it look better lol",
            "Make this image look like it was taken with a good camera.",
            "Clean this up for me.",
            "plz improve",
        ),
        degradations=(),
        situations=(
            "looks a bit off, but they cannot say why",
            "needs to look good for a job profile",
            "is an old family photo they want to look its best",
            "is going on social media and should stand out",
            "looks amateur next to their friends' photos",
            "is for a printed album and should look professional",
        ),
    ),
)


def all_tasks() -> tuple[Task, ...]:
    """Every registered task, in id order."""
    return _TASKS


def task_names() -> tuple[str, ...]:
    """The names of every registered task, in id order."""
    return tuple(task.name for task in _TASKS)


def get_task(key: str | int) -> Task:
    """Look a task up by name or id; the error lists the valid names."""
    for task in _TASKS:
        if key in (task.name, task.id):
            return task
    raise KeyError(f"unknown task {key!r}; known tasks: {', '.join(task_names())}")


def resolve_tasks(keys: Iterable[str] | None) -> tuple[Task, ...]:
    """Tasks for a user's selection (names, possibly comma-separated); None or empty means all tasks."""
    names = [name.strip() for key in keys or () for name in key.split(",") if name.strip()]
    if not names:
        return _TASKS
    unknown = [name for name in names if name not in task_names()]
    if unknown:
        raise ValueError(f"unknown task(s): {', '.join(unknown)}; choose from: {', '.join(task_names())}")
    return tuple(sorted({get_task(name) for name in names}, key=lambda task: task.id))
