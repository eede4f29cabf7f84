"""Per-dataset image transforms as TensorFlow ops (docs/method.md §7, §8).

Training transforms take a per-image stateless seed (a [2] integer tensor), so a pipeline that hands out seeds
deterministically (pipelines.py zips each image with a draw of a seeded `tf.data.Dataset.random`) repeats
exactly under a fixed --seed, whatever the number of parallel map calls. Geometry runs on pixel values 0–255
(padding is black, as torchvision's RandomCrop(padding) pads with 0); normalisation comes last:
(x / 255 − mean) / std with the DatasetSpec's per-channel constants.

- "pad_crop" (CIFAR-10/100, SVHN, digits, ImageNet16-120): zero-pad `crop_padding` pixels on each side, crop
  `image_size` at a uniformly random offset, mirror left-right with probability 1/2 if `flip`.
- "resized_crop" (ImageNet): a random box of 8–100 % of the area and aspect ratio 3/4–4/3 (TF's
  `sample_distorted_bounding_box`: area and ratio are drawn uniformly, where torchvision draws the ratio
  log-uniformly, and after 10 failed tries it keeps the whole image, where torchvision takes a centre crop),
  resized bilinearly to `image_size`, then the flip.
- Retraining adds (docs/method.md §8): cutout (CIFAR, `cutout` > 0): after normalisation, a cutout x cutout square
  centred on a uniformly random pixel (clipped at the borders) is set to 0, as the reference's Cutout; colour
  jitter (ImageNet, `color_jitter`): brightness, contrast and saturation factors uniform in [0.6, 1.4] and a
  hue shift uniform in [-0.2, 0.2] of a turn, as torchvision's ColorJitter(0.4, 0.4, 0.4, 0.2), applied in that
  fixed order (torchvision shuffles the order per image).
- Evaluation: "pad_crop" datasets only normalise; ImageNet resizes the shorter side to 256 (for 224; the same
  ratio for other sizes) and takes the centre `image_size` square.
"""

import tensorflow as tf

EVAL_RESIZE_RATIO = 256 / 224
RESIZED_CROP_AREA = (0.08, 1.0)
RESIZED_CROP_WIDTH_OVER_HEIGHT = (3 / 4, 4 / 3)
RESIZED_CROP_ATTEMPTS = 10
COLOR_JITTER = (0.4, 0.4, 0.4, 0.2)  # brightness, contrast, saturation, hue (torchvision's arguments)
_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def normalize(image, mean, std):
    """(image / 255 − mean) / std per channel, as float32; `image` holds pixel values 0–255 ([..., H, W, 3])."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def pad_and_random_crop(image, size, padding, seed):
    """Zero-pads `padding` pixels on each side of a [H, W, C] image and crops [size, size, C] at random."""
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    return tf.image.stateless_random_crop(padded, [size, size, tf.shape(image)[-1]], seed=seed)


def random_flip(image, seed):
    """Mirrors a [H, W, C] image left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def random_resized_crop(image, size, seed):
    """A random box of a [H, W, 3] image (area 8–100 %, aspect 3/4–4/3) resized to [size, size, 3] float32."""
    begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=RESIZED_CROP_WIDTH_OVER_HEIGHT, area_range=RESIZED_CROP_AREA,
        max_attempts=RESIZED_CROP_ATTEMPTS, use_image_if_no_bounding_boxes=True)
    box = tf.slice(image, begin, box_size)
    return tf.image.resize(box, (size, size), method="bilinear", antialias=True)


def resize_and_center_crop(image, resize, crop):
    """Resizes the shorter side of a [H, W, 3] image to `resize` (aspect kept) and crops the centre crop x crop."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = resize / tf.minimum(height, width)
    new_height = tf.maximum(tf.cast(height * scale, tf.int32), crop)
    new_width = tf.maximum(tf.cast(width * scale, tf.int32), crop)
    resized = tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear", antialias=True)
    top = tf.cast(tf.round(tf.cast(new_height - crop, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_width - crop, tf.float32) / 2.0), tf.int32)
    # Slicing at computed offsets loses the static shape; the network's pooling layers need it.
    return tf.ensure_shape(resized[top:top + crop, left:left + crop, :], [crop, crop, image.shape[-1]])


def cutout(image, size, seed):
    """Sets a size x size square of a [H, W, C] image to 0, centred on a random pixel and clipped at the edges."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    center = tf.random.stateless_uniform([2], seed, minval=0, maxval=tf.int32.max, dtype=tf.int32)
    center_y, center_x = center[0] % height, center[1] % width
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    inside = ((rows >= center_y - size // 2) & (rows < center_y + size - size // 2)
              & (cols >= center_x - size // 2) & (cols < center_x + size - size // 2))
    return image * tf.cast(~inside, image.dtype)[:, :, None]


def color_jitter(image, seed, strength=COLOR_JITTER):
    """Random brightness, contrast, saturation and hue of a [H, W, 3] image of pixel values 0–255."""
    brightness, contrast, saturation, hue = strength
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=4))
    image = image / 255.0

    def factor(amount, factor_seed):
        return tf.random.stateless_uniform([], factor_seed, 1.0 - amount, 1.0 + amount)

    def grey(x):
        return tf.reduce_sum(x * tf.constant(_GREY_WEIGHTS), axis=-1, keepdims=True)

    image = tf.clip_by_value(image * factor(brightness, seeds[0]), 0.0, 1.0)
    mean = tf.reduce_mean(grey(image))
    image = tf.clip_by_value(mean + factor(contrast, seeds[1]) * (image - mean), 0.0, 1.0)
    image = tf.clip_by_value(grey(image) + factor(saturation, seeds[2]) * (image - grey(image)), 0.0, 1.0)
    image = tf.image.adjust_hue(image, tf.random.stateless_uniform([], seeds[3], -hue, hue))
    return image * 255.0


def train_transform(spec, cutout_size=0, jitter=False):
    """fn(image uint8 [H, W, 3], seed [2]) -> float32 [size, size, 3]: the training augmentation of `spec`.

    Args:
        spec: the dataset's catalog.DatasetSpec.
        cutout_size: side of the cutout square applied after normalisation (0: none; retraining on CIFAR).
        jitter: colour jitter after the crop and flip (retraining on ImageNet).
    """

    def transform(image, seed):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        cutout_seed, jitter_seed = (tf.random.experimental.stateless_fold_in(seed, salt) for salt in (1, 2))
        image = tf.cast(image, tf.float32)
        if spec.augmentation == "resized_crop":
            image = random_resized_crop(image, spec.image_size, crop_seed)
        else:
            image = pad_and_random_crop(image, spec.image_size, spec.crop_padding, crop_seed)
        if spec.flip:
            image = random_flip(image, flip_seed)
        if jitter:
            image = color_jitter(image, jitter_seed)
        image = normalize(image, spec.mean, spec.std)
        if cutout_size:
            image = cutout(image, cutout_size, cutout_seed)
        return image

    return transform


def eval_transform(spec):
    """fn(image uint8 [H, W, 3]) -> float32 [size, size, 3]: the deterministic evaluation transform of `spec`."""

    def transform(image):
        image = tf.cast(image, tf.float32)
        if spec.augmentation == "resized_crop":
            image = resize_and_center_crop(image, round(spec.image_size * EVAL_RESIZE_RATIO), spec.image_size)
        return normalize(image, spec.mean, spec.std)

    return transform
