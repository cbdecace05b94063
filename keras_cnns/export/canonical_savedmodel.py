"""A SavedModel written so that the same model gives the same bytes, whatever ran before it.

Exports are compared file by file (a killed and resumed deterministic run must end
bit-identical), so variable order, traced function names and the fingerprint's uuid are made
to depend on the model only.
"""

from __future__ import annotations

from pathlib import Path

from keras_cnns.export.directory import ExportError


def save_canonical(path, endpoints: dict) -> None:
    """`tf.saved_model.save` of `endpoints` (tf.functions), the same bytes for the same model.

    Keras' ExportArchive tracks the variables the endpoints capture in an order that follows
    their id() hashes, so two identical models (two identical deterministic runs) wrote
    different `variables.*` and `saved_model.pb` bytes; here they are tracked sorted by name.
    No weight is stored twice: only the captured tf.Variables are tracked, not Keras's wrappers.
    fingerprint.pb's random `uuid` becomes one derived from the fingerprint's content hashes.
    """
    import tensorflow as tf

    concrete = {name: fn.get_concrete_function() for name, fn in endpoints.items()}
    captured = {}
    for function in concrete.values():
        for variable in function.variables:
            captured.setdefault(id(variable), variable)
    variables = sorted(captured.values(), key=lambda v: (v.name, tuple(v.shape)))
    if len({v.name for v in variables}) != len(variables):
        raise ExportError("The model has two variables of one name; name its layers uniquely.")
    module = tf.Module()
    module.captured_variables = variables
    for name, function in endpoints.items():
        setattr(module, name, function)
    tf.saved_model.save(module, str(path), signatures=concrete)
    _canonical_function_names(Path(path))
    _canonical_fingerprint(Path(path))


def _canonical_function_names(path: Path) -> None:
    """Number the graph's functions by their order, not by the process-wide trace counter.

    TensorFlow names a traced function `<name>_<uid>` with a counter shared by everything the
    process traced before (a training run traces hundreds), so the same export written after
    another history got other names; the names are rewritten to `<name>_<rank>`, everywhere
    they occur (function library, call attributes, the object graph's maps), and the library is
    sorted by name.
    """
    import re

    from google.protobuf.descriptor import FieldDescriptor
    from tensorflow.core.protobuf import saved_model_pb2

    file = path / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(file.read_bytes())
    names = [function.signature.name for meta in saved.meta_graphs
             for function in meta.graph_def.library.function]
    numbered = [(int(m.group(2)), m.group(1), name) for name in names
                if (m := re.fullmatch(r"(.*)_(\d+)", name))]
    renamed = {name: f"{stem}_{rank}" for rank, (_, stem, name) in enumerate(sorted(numbered))}
    # Captured variables' placeholders are also named by that counter ("_user_specified_name").
    from google.protobuf import text_format

    counters = re.findall(r'key: "_user_specified_name"\s+value \{\s+s: "(\d+)"',
                          text_format.MessageToString(saved))
    placeholders = {str(n).encode(): f"captured_{rank}".encode()
                    for rank, n in enumerate(sorted(set(map(int, counters))))}
    # And a while loop's unused inputs (tf.map_fn's, in serving_bytes) by its condition's
    # name before the library renamed it: "map_while_map_while_cond_936___redundant_...".
    unused = re.compile(r"_(\d+)(___redundant_placeholder\d+)")
    loops = sorted({int(n) for n, _ in unused.findall(text_format.MessageToString(saved))})
    loop_rank = {str(n): str(rank) for rank, n in enumerate(loops)}

    def renamed_string(value: str) -> str:
        value = renamed.get(value, value)
        return unused.sub(lambda m: f"_{loop_rank.get(m.group(1), m.group(1))}{m.group(2)}",
                          value)

    def repeated(field) -> bool:  # `label` is gone from newer protobuf runtimes
        if hasattr(field, "is_repeated"):
            return field.is_repeated
        return field.label == FieldDescriptor.LABEL_REPEATED

    def rewrite(message) -> None:
        for field, value in message.ListFields():
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                entries = dict(value)
                if field.message_type.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING:
                    value.clear()
                    for key, item in entries.items():
                        target = value[renamed.get(key, key)]
                        if hasattr(item, "CopyFrom"):
                            target.CopyFrom(item)
                            rewrite(target)
                            if key == "_user_specified_name" and target.s in placeholders:
                                target.s = placeholders[target.s]
                        else:
                            value[renamed.get(key, key)] = item
                else:
                    for item in value.values():
                        if hasattr(item, "ListFields"):
                            rewrite(item)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in (value if repeated(field) else [value]):
                    rewrite(item)
            elif field.type == FieldDescriptor.TYPE_STRING:
                if repeated(field):
                    value[:] = [renamed_string(v) for v in value]
                elif renamed_string(value) != value:
                    setattr(message, field.name, renamed_string(value))

    rewrite(saved)
    for meta in saved.meta_graphs:  # and listed in name order, not in the order of tracing
        library = meta.graph_def.library
        functions = sorted((type(f).FromString(f.SerializeToString()) for f in library.function),
                           key=lambda function: function.signature.name)
        del library.function[:]
        library.function.extend(functions)
    file.write_bytes(saved.SerializeToString(deterministic=True))


def _canonical_fingerprint(path: Path) -> None:
    import hashlib

    from tensorflow.core.protobuf import fingerprint_pb2

    file = path / "fingerprint.pb"
    if not file.exists():
        return
    fingerprint = fingerprint_pb2.FingerprintDef()
    try:  # the checksums of the rewritten saved_model.pb, as TensorFlow computes them
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

        fingerprint.ParseFromString(fingerprinting.CreateFingerprintDef(str(path)))
    except (ImportError, AttributeError):
        fingerprint.ParseFromString(file.read_bytes())
    fingerprint.ClearField("uuid")
    digest = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).digest()
    fingerprint.uuid = str(int.from_bytes(digest[:16], "big"))
    file.write_bytes(fingerprint.SerializeToString(deterministic=True))
