# An animated scene for Blender, built by this script in an empty
# (factory) scene and rendered with Cycles on the CPU: a ring of cubes
# turning under a camera that orbits them. Run by each task as
#
#   blender -b --factory-startup --python-exit-code 1 -P /input/scene.py -- <frame> <out> [<border> [<device>]]
#
# where <border> is the rectangle of the frame to render, as fractions
# "x_min,x_max,y_min,y_max" (y upwards; Cairn's `{border}`): a tile, when
# the job splits frames into tiles, and "0,1,0,1" otherwise; and <device>
# is CPU (the default), or CUDA or OPTIX to render on the GPUs the task
# was lent (a job with `gpus` under [limits]; see gpu.toml).
#
# Everything that decides the pixels is fixed here, so two honest
# renders of a frame are the same bits: the seed, the sample count, no
# denoiser, no time limit, one thread, no adaptive sampling. The frame is
# written as BMP, which carries no metadata (Cycles writes its render times
# into a PNG's text chunks, so two PNGs of the same pixels differ). There
# is no dither: Blender's dither noise follows a pixel's place in the image
# it writes, so a tile dithered on its own differs from the same pixels of
# the whole frame; without it, tiles join into the whole frame's bits.

import math
import sys

import bpy

argv = sys.argv[sys.argv.index("--") + 1:]
frame = int(argv[0])
out = argv[1]
border = [float(f) for f in argv[2].split(",")] if len(argv) > 2 else [0.0, 1.0, 0.0, 1.0]
device = argv[3] if len(argv) > 3 else "CPU"

scene = bpy.context.scene
for obj in list(scene.objects):
    bpy.data.objects.remove(obj, do_unlink=True)

# A ring of cubes, each a different colour, turning over 48 frames.
for i in range(6):
    angle = i * math.tau / 6
    bpy.ops.mesh.primitive_cube_add(
        size=0.8, location=(2.2 * math.cos(angle), 2.2 * math.sin(angle), 0.4)
    )
    cube = bpy.context.object
    material = bpy.data.materials.new(f"cube-{i}")
    material.use_nodes = True
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (
        0.5 + 0.5 * math.cos(angle),
        0.5 + 0.5 * math.cos(angle + 2.1),
        0.5 + 0.5 * math.cos(angle + 4.2),
        1.0,
    )
    cube.data.materials.append(material)
    cube.rotation_euler = (0.0, 0.0, (frame / 48) * math.tau + angle)

bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, 0))
bpy.ops.object.light_add(type="SUN", location=(3, -3, 6))
bpy.context.object.data.energy = 3.0

# The camera orbits once every 48 frames, looking at the centre.
orbit = (frame / 48) * math.tau
bpy.ops.object.camera_add(location=(7 * math.cos(orbit), 7 * math.sin(orbit), 3.5))
camera = bpy.context.object
direction = -camera.location
camera.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
scene.camera = camera

world = bpy.data.worlds.new("sky")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.6, 0.7, 0.9, 1.0)
scene.world = world

render = scene.render
render.engine = "CYCLES"
render.resolution_x = 320
render.resolution_y = 180
render.resolution_percentage = 100
render.dither_intensity = 0.0
render.threads_mode = "FIXED"
render.threads = 1
render.image_settings.file_format = "BMP"
if device == "CPU":
    scene.cycles.device = "CPU"
else:
    # Every device of that backend the task can see: the sandbox shows it
    # only the GPUs it was lent. None found is an error, never a quiet
    # render on the CPU.
    prefs = bpy.context.preferences.addons["cycles"].preferences
    prefs.compute_device_type = device
    gpus = [d for d in prefs.get_devices_for_type(device) if d.type == device]
    if not gpus:
        sys.exit(f"no {device} device found")
    for d in prefs.get_devices_for_type(device):
        d.use = d.type == device
    scene.cycles.device = "GPU"
scene.cycles.samples = 16
scene.cycles.seed = 7
scene.cycles.use_denoising = False
scene.cycles.use_adaptive_sampling = False
scene.cycles.time_limit = 0
scene.frame_set(frame)

if border != [0.0, 1.0, 0.0, 1.0]:
    # Only the tile's pixels, written as an image of the tile's size.
    render.use_border = True
    render.use_crop_to_border = True
    (render.border_min_x, render.border_max_x,
     render.border_min_y, render.border_max_y) = border
render.filepath = out
bpy.ops.render.render(write_still=True)
