/*
 * codec/torch/pickle.c — an allowlisted, symbolic pickle reader.
 *
 * A pickle is a program for a stack machine, and Python's unpickler runs it:
 * a GLOBAL names any callable, REDUCE calls it.  This reader runs nothing.
 * It knows the opcodes of protocols 2 to 5 that a state dict, or a dict of
 * state dicts, optimizer states and plain values, is made of, builds the
 * values they describe (None, bools, ints, floats, strings, bytes, tuples,
 * lists, dicts, sets) and knows a short list of globals by name, whose
 * "calls" it interprets itself:
 *
 *   collections.OrderedDict()                 an empty dict
 *   torch._utils._rebuild_tensor(_v2, _v3)    a tensor: storage, offset,
 *                                             size, stride (v3: its dtype)
 *   torch._utils._rebuild_parameter(_with_state)  the tensor it wraps
 *   torch._tensor._rebuild_from_type_v2       the call it wraps, on
 *                                             torch.Tensor or Parameter
 *   torch.Size(tuple)                         the tuple
 *   torch.device(str)                         the string
 *   _codecs.encode(str, 'latin1')             the bytes of a protocol-2 bytes
 *
 * and, as plain values, the storage classes (torch.FloatStorage, ...,
 * torch.UntypedStorage), the dtypes (torch.float32, ...), torch.Tensor and
 * torch.nn.parameter.Parameter.  A persistent id (BINPERSID) must be the
 * tuple ('storage', <storage class>, key, location, numel[, view metadata])
 * that torch.save writes: it becomes a storage reference, resolved by the
 * reader to the member data/<key>.
 *
 * Everything else is refused with one line naming the opcode (or the
 * global) and its offset: any other global (os.system, builtins.eval,
 * getattr, subprocess.*, quantized storages and tensors), a REDUCE, BUILD
 * or persistent id of anything else, NEWOBJ, INST, OBJ, EXT1/2/4, PERSID,
 * the text opcodes of protocol 0, out-of-band buffers.  Limits (torch.h,
 * PK_*; mount.modelfs(8), LIMITS): string and bytes length, stack size,
 * open MARKs, memo entries, container nesting, container size, values of
 * one pickle.  A memo index must be the next free one or an existing one
 * (a get); a put never overwrites an entry, so a memo cannot be poisoned.
 * Every length is checked against the bytes that are left.  Cycles (a list
 * appended to itself through the memo) are possible and harmless here:
 * nothing recurses over values in this file, and the reader that walks
 * them bounds its depth and its count of visits.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torch/torch.h"

/* ------------------------------------------------------------ globals */

enum role {
	R_ODICT = 1, R_REBUILD_V1, R_REBUILD_V2, R_REBUILD_V3, R_PARAM, R_PARAM_STATE,
	R_FROM_TYPE_V2, R_SIZE, R_DEVICE, R_ENCODE,
	R_STORAGE,              /* a storage class: `dtype` its element type */
	R_DTYPE,                /* a dtype value */
	R_CLASS,                /* torch.Tensor, Parameter: a value only */
	R_REFUSED,              /* known, refused with `why` */
};

static const struct global {
	const char *module, *name;
	int role;
	int32_t dtype;
	const char *why;
} globals[] = {
	{"collections", "OrderedDict", R_ODICT, 0, NULL},
	{"torch._utils", "_rebuild_tensor", R_REBUILD_V1, 0, NULL},
	{"torch._utils", "_rebuild_tensor_v2", R_REBUILD_V2, 0, NULL},
	{"torch._utils", "_rebuild_tensor_v3", R_REBUILD_V3, 0, NULL},
	{"torch._utils", "_rebuild_parameter", R_PARAM, 0, NULL},
	{"torch._utils", "_rebuild_parameter_with_state", R_PARAM_STATE, 0, NULL},
	{"torch._tensor", "_rebuild_from_type_v2", R_FROM_TYPE_V2, 0, NULL},
	{"torch", "Size", R_SIZE, 0, NULL},
	{"torch", "device", R_DEVICE, 0, NULL},
	{"_codecs", "encode", R_ENCODE, 0, NULL},
	{"torch", "Tensor", R_CLASS, 0, NULL},
	{"torch.nn.parameter", "Parameter", R_CLASS, 0, NULL},
	{"torch", "FloatStorage", R_STORAGE, MFS_DT_FLOAT, NULL},
	{"torch", "DoubleStorage", R_STORAGE, MFS_DT_DOUBLE, NULL},
	{"torch", "HalfStorage", R_STORAGE, MFS_DT_FLOAT16, NULL},
	{"torch", "BFloat16Storage", R_STORAGE, MFS_DT_BFLOAT16, NULL},
	{"torch", "LongStorage", R_STORAGE, MFS_DT_INT64, NULL},
	{"torch", "IntStorage", R_STORAGE, MFS_DT_INT32, NULL},
	{"torch", "ShortStorage", R_STORAGE, MFS_DT_INT16, NULL},
	{"torch", "CharStorage", R_STORAGE, MFS_DT_INT8, NULL},
	{"torch", "ByteStorage", R_STORAGE, MFS_DT_UINT8, NULL},
	{"torch", "BoolStorage", R_STORAGE, MFS_DT_BOOL, NULL},
	{"torch", "ComplexFloatStorage", R_STORAGE, MFS_DT_COMPLEX64, NULL},
	{"torch", "ComplexDoubleStorage", R_STORAGE, MFS_DT_COMPLEX128, NULL},
	{"torch", "UntypedStorage", R_STORAGE, MFS_DT_UNDEFINED, NULL},
	{"torch.storage", "UntypedStorage", R_STORAGE, MFS_DT_UNDEFINED, NULL},
	{"torch", "float32", R_DTYPE, MFS_DT_FLOAT, NULL},
	{"torch", "float64", R_DTYPE, MFS_DT_DOUBLE, NULL},
	{"torch", "float16", R_DTYPE, MFS_DT_FLOAT16, NULL},
	{"torch", "bfloat16", R_DTYPE, MFS_DT_BFLOAT16, NULL},
	{"torch", "int64", R_DTYPE, MFS_DT_INT64, NULL},
	{"torch", "int32", R_DTYPE, MFS_DT_INT32, NULL},
	{"torch", "int16", R_DTYPE, MFS_DT_INT16, NULL},
	{"torch", "int8", R_DTYPE, MFS_DT_INT8, NULL},
	{"torch", "uint8", R_DTYPE, MFS_DT_UINT8, NULL},
	{"torch", "uint16", R_DTYPE, MFS_DT_UINT16, NULL},
	{"torch", "uint32", R_DTYPE, MFS_DT_UINT32, NULL},
	{"torch", "uint64", R_DTYPE, MFS_DT_UINT64, NULL},
	{"torch", "bool", R_DTYPE, MFS_DT_BOOL, NULL},
	{"torch", "complex64", R_DTYPE, MFS_DT_COMPLEX64, NULL},
	{"torch", "complex128", R_DTYPE, MFS_DT_COMPLEX128, NULL},
	{"torch", "float8_e5m2", R_DTYPE, MFS_DT_FLOAT8E5M2, NULL},
	{"torch", "float8_e4m3fn", R_DTYPE, MFS_DT_FLOAT8E4M3FN, NULL},
	{"torch", "float8_e5m2fnuz", R_DTYPE, MFS_DT_FLOAT8E5M2FNUZ, NULL},
	{"torch", "float8_e4m3fnuz", R_DTYPE, MFS_DT_FLOAT8E4M3FNUZ, NULL},
	{"torch", "QInt8Storage", R_REFUSED, 0, "quantized storages are not supported"},
	{"torch", "QUInt8Storage", R_REFUSED, 0, "quantized storages are not supported"},
	{"torch", "QInt32Storage", R_REFUSED, 0, "quantized storages are not supported"},
	{"torch", "QUInt4x2Storage", R_REFUSED, 0, "quantized storages are not supported"},
	{"torch", "QUInt2x4Storage", R_REFUSED, 0, "quantized storages are not supported"},
	{"torch._utils", "_rebuild_qtensor", R_REFUSED, 0, "quantized tensors are not supported"},
	{"torch._utils", "_rebuild_sparse_tensor", R_REFUSED, 0,
	 "sparse tensors are not supported"},
};

static const struct global *global_find(const char *module, size_t mlen, const char *name,
                                        size_t nlen)
{
	for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++) {
		const struct global *g = &globals[i];
		if (strlen(g->module) == mlen && memcmp(g->module, module, mlen) == 0 &&
		    strlen(g->name) == nlen && memcmp(g->name, name, nlen) == 0)
			return g;
	}
	return NULL;
}

/* ------------------------------------------------------------ opcodes */

static const char *op_name(uint8_t op)
{
	switch (op) {
	case '(': return "MARK";
	case '.': return "STOP";
	case '0': return "POP";
	case '1': return "POP_MARK";
	case '2': return "DUP";
	case 'F': return "FLOAT";
	case 'I': return "INT";
	case 'J': return "BININT";
	case 'K': return "BININT1";
	case 'L': return "LONG";
	case 'M': return "BININT2";
	case 'N': return "NONE";
	case 'P': return "PERSID";
	case 'Q': return "BINPERSID";
	case 'R': return "REDUCE";
	case 'S': return "STRING";
	case 'T': return "BINSTRING";
	case 'U': return "SHORT_BINSTRING";
	case 'V': return "UNICODE";
	case 'X': return "BINUNICODE";
	case 'a': return "APPEND";
	case 'b': return "BUILD";
	case 'c': return "GLOBAL";
	case 'd': return "DICT";
	case '}': return "EMPTY_DICT";
	case 'e': return "APPENDS";
	case 'g': return "GET";
	case 'h': return "BINGET";
	case 'i': return "INST";
	case 'j': return "LONG_BINGET";
	case 'l': return "LIST";
	case ']': return "EMPTY_LIST";
	case 'o': return "OBJ";
	case 'p': return "PUT";
	case 'q': return "BINPUT";
	case 'r': return "LONG_BINPUT";
	case 's': return "SETITEM";
	case 't': return "TUPLE";
	case ')': return "EMPTY_TUPLE";
	case 'u': return "SETITEMS";
	case 'G': return "BINFLOAT";
	case 0x80: return "PROTO";
	case 0x81: return "NEWOBJ";
	case 0x82: return "EXT1";
	case 0x83: return "EXT2";
	case 0x84: return "EXT4";
	case 0x85: return "TUPLE1";
	case 0x86: return "TUPLE2";
	case 0x87: return "TUPLE3";
	case 0x88: return "NEWTRUE";
	case 0x89: return "NEWFALSE";
	case 0x8a: return "LONG1";
	case 0x8b: return "LONG4";
	case 'B': return "BINBYTES";
	case 'C': return "SHORT_BINBYTES";
	case 0x8c: return "SHORT_BINUNICODE";
	case 0x8d: return "BINUNICODE8";
	case 0x8e: return "BINBYTES8";
	case 0x8f: return "EMPTY_SET";
	case 0x90: return "ADDITEMS";
	case 0x91: return "FROZENSET";
	case 0x92: return "NEWOBJ_EX";
	case 0x93: return "STACK_GLOBAL";
	case 0x94: return "MEMOIZE";
	case 0x95: return "FRAME";
	case 0x96: return "BYTEARRAY8";
	case 0x97: return "NEXT_BUFFER";
	case 0x98: return "READONLY_BUFFER";
	default: return NULL;
	}
}

/* ------------------------------------------------------------ the machine */

struct vm {
	struct mfs_arena *a;
	const uint8_t *p;
	size_t len, pos;
	size_t op_at;           /* offset of the opcode being run */
	uint8_t op;
	struct pk_val **stack;
	size_t n_stack;
	size_t marks[PK_MAX_MARKS];
	size_t n_marks;
	struct pk_val **memo;
	size_t n_memo, cap_memo;
	uint64_t n_values;
	char **globals;
	size_t n_globals, cap_globals;
	const char *display;
	char *err;
	size_t errlen;
};

static int fail(struct vm *v, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct vm *v, int rc, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	const char *name = op_name(v->op);
	char opn[16];
	if (!name) {
		snprintf(opn, sizeof(opn), "0x%02x", v->op);
		name = opn;
	}
	return mfs_errf(v->err, v->errlen, rc, v->display, "opcode %s at offset %zu: %s", name,
	                v->op_at, what);
}

static struct pk_val *new_val(struct vm *v, int kind)
{
	if (v->n_values >= PK_MAX_VALUES)
		return NULL;
	struct pk_val *x = mfs_arena_alloc(v->a, sizeof(*x));
	if (x) {
		x->kind = (uint8_t)kind;
		v->n_values++;
	}
	return x;
}

static int oom(struct vm *v)
{
	if (v->n_values >= PK_MAX_VALUES)
		return fail(v, -EFBIG, "more than %u values", PK_MAX_VALUES);
	return fail(v, -ENOMEM, "out of memory");
}

static int push(struct vm *v, struct pk_val *x)
{
	if (!x)
		return oom(v);
	if (v->n_stack >= PK_MAX_STACK)
		return fail(v, -EFBIG, "stack of more than %u values", PK_MAX_STACK);
	v->stack[v->n_stack++] = x;
	return 0;
}

static size_t base(const struct vm *v)
{
	return v->n_marks ? v->marks[v->n_marks - 1] : 0;
}

static struct pk_val *pop(struct vm *v)
{
	if (v->n_stack <= base(v))
		return NULL;
	return v->stack[--v->n_stack];
}

static struct pk_val *top(struct vm *v)
{
	return v->n_stack > base(v) ? v->stack[v->n_stack - 1] : NULL;
}

/* Pop to the last MARK: the values above it start at *first, *n of them. */
static int pop_mark(struct vm *v, size_t *first, size_t *n)
{
	if (!v->n_marks)
		return fail(v, -EUCLEAN, "no MARK to pop");
	*first = v->marks[--v->n_marks];
	*n = v->n_stack - *first;
	v->n_stack = *first;
	return 0;
}

static bool need(struct vm *v, size_t n)
{
	return v->len - v->pos >= n;
}

static int short_read(struct vm *v, uint64_t n)
{
	return fail(v, -EUCLEAN, "needs %" PRIu64 " bytes, %zu are left", n, v->len - v->pos);
}

/* Add a child to a container: its size and its nesting checked. */
static int add_item(struct vm *v, struct pk_val *c, struct pk_val *key, struct pk_val *x)
{
	if (c->n >= PK_MAX_ITEMS || c->n >= UINT32_MAX / 2)
		return fail(v, -EFBIG, "a container of more than %u elements", PK_MAX_ITEMS);
	unsigned d = (unsigned)x->depth + 1;
	if (key && key->depth + 1u > d)
		d = key->depth + 1u;
	if (d > PK_MAX_DEPTH)
		return fail(v, -EFBIG, "containers nested deeper than %u", PK_MAX_DEPTH);
	if (c->n == c->cap) {
		uint32_t cap = c->cap ? c->cap * 2 : 4;
		struct pk_val **items = mfs_arena_array(v->a, cap, sizeof(*items));
		struct pk_val **vals = key ? mfs_arena_array(v->a, cap, sizeof(*vals)) : NULL;
		if (!items || (key && !vals))
			return fail(v, -ENOMEM, "out of memory");
		if (c->n)
			memcpy(items, c->items, c->n * sizeof(*items));
		if (key && c->n)
			memcpy(vals, c->vals, c->n * sizeof(*vals));
		c->items = items;
		if (key)
			c->vals = vals;
		c->cap = cap;
	}
	if (key) {
		c->items[c->n] = key;
		c->vals[c->n++] = x;
	} else {
		c->items[c->n++] = x;
	}
	if (d > c->depth)
		c->depth = (uint8_t)d;
	return 0;
}

static struct pk_val *make_tuple(struct vm *v, struct pk_val **items, size_t n)
{
	struct pk_val *t = new_val(v, PK_TUPLE);
	if (!t)
		return NULL;
	t->items = n ? mfs_arena_array(v->a, n, sizeof(*items)) : NULL;
	if (n && !t->items)
		return NULL;
	unsigned d = 0;
	for (size_t i = 0; i < n; i++) {
		t->items[i] = items[i];
		if (items[i]->depth + 1u > d)
			d = items[i]->depth + 1u;
	}
	t->n = t->cap = (uint32_t)n;
	t->depth = (uint8_t)(d > 255 ? 255 : d);
	return d > PK_MAX_DEPTH ? NULL : t;
}

static int push_tuple(struct vm *v, struct pk_val **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (items[i]->depth + 1u > PK_MAX_DEPTH)
			return fail(v, -EFBIG, "containers nested deeper than %u", PK_MAX_DEPTH);
	return push(v, make_tuple(v, items, n));
}

static int push_str(struct vm *v, int kind, uint64_t n)
{
	if (n > PK_MAX_STRING)
		return fail(v, -EFBIG, "a string of %" PRIu64 " bytes exceeds the limit of %u", n,
		            PK_MAX_STRING);
	if (!need(v, (size_t)n))
		return short_read(v, n);
	struct pk_val *x = new_val(v, kind);
	if (!x)
		return oom(v);
	x->s = mfs_arena_strndup(v->a, (const char *)v->p + v->pos, (size_t)n);
	if (!x->s)
		return oom(v);
	x->len = (size_t)n;
	v->pos += (size_t)n;
	return push(v, x);
}

static int note_global(struct vm *v, const char *module, size_t mlen, const char *name,
                       size_t nlen)
{
	char full[512];
	snprintf(full, sizeof(full), "%.*s.%.*s", (int)(mlen > 200 ? 200 : mlen), module,
	         (int)(nlen > 200 ? 200 : nlen), name);
	for (size_t i = 0; i < v->n_globals; i++)
		if (strcmp(v->globals[i], full) == 0)
			return 0;
	if (v->n_globals == v->cap_globals) {
		size_t cap = v->cap_globals ? v->cap_globals * 2 : 16;
		char **g = mfs_arena_array(v->a, cap, sizeof(*g));
		if (!g)
			return oom(v);
		if (v->n_globals)
			memcpy(g, v->globals, v->n_globals * sizeof(*g));
		v->globals = g;
		v->cap_globals = cap;
	}
	v->globals[v->n_globals] = mfs_arena_strdup(v->a, full);
	if (!v->globals[v->n_globals])
		return oom(v);
	v->n_globals++;
	return 0;
}

/* A printable copy of a global's name for messages. */
static void show(char *buf, size_t len, const char *s, size_t n)
{
	size_t j = 0;
	for (size_t i = 0; i < n && j + 5 < len && i < 120; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch >= 0x7f)
			j += (size_t)snprintf(buf + j, len - j, "\\x%02x", ch);
		else
			buf[j++] = (char)ch;
	}
	buf[j] = '\0';
}

/*
 * Protocol 2 writes Python 2 names for some modules, which Python 3's
 * unpickler maps back (fix_imports): the name a global is known and shown
 * by is the one Python 3 would import.
 */
static const char *const py2_modules[][2] = {
	{"__builtin__", "builtins"}, {"copy_reg", "copyreg"}, {"commands", "subprocess"},
	{"cPickle", "pickle"}, {"exceptions", "builtins"}, {"UserDict", "collections"},
};

static int push_global(struct vm *v, const char *module, size_t mlen, const char *name, size_t nlen)
{
	for (size_t i = 0; i < sizeof(py2_modules) / sizeof(py2_modules[0]); i++) {
		if (strlen(py2_modules[i][0]) == mlen && memcmp(py2_modules[i][0], module, mlen) == 0) {
			module = py2_modules[i][1];
			mlen = strlen(module);
			break;
		}
	}
	int rc = note_global(v, module, mlen, name, nlen);
	if (rc < 0)
		return rc;
	const struct global *g = global_find(module, mlen, name, nlen);
	char qm[512], qn[512];
	show(qm, sizeof(qm), module, mlen);
	show(qn, sizeof(qn), name, nlen);
	if (!g)
		return fail(v, -EUCLEAN, "global %s.%s is not allowed", qm, qn);
	if (g->role == R_REFUSED)
		return fail(v, -EUCLEAN, "global %s.%s: %s", qm, qn, g->why);
	struct pk_val *x = new_val(v, PK_GLOBAL);
	if (!x)
		return oom(v);
	x->gid = (uint16_t)(g - globals);
	x->s = mfs_arena_printf(v->a, "%s.%s", g->module, g->name);
	if (!x->s)
		return oom(v);
	x->len = strlen(x->s);
	return push(v, x);
}

static const struct global *as_global(const struct pk_val *x)
{
	return x && x->kind == PK_GLOBAL ? &globals[x->gid] : NULL;
}

/* A tuple of ints (a size or a stride) into out[]: its length, or -1. */
static int int_tuple(const struct pk_val *x, int64_t *out)
{
	if (!x || x->kind != PK_TUPLE || x->n > MFS_MAX_RANK)
		return -1;
	for (size_t i = 0; i < x->n; i++) {
		if (x->items[i]->kind != PK_INT)
			return -1;
		out[i] = x->items[i]->i;
	}
	return (int)x->n;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]),
 * _rebuild_tensor(storage, offset, size, stride), _v3 with a dtype after hooks. */
static int rebuild_tensor(struct vm *v, int role, const struct pk_val *args)
{
	size_t min = role == R_REBUILD_V1 ? 4 : role == R_REBUILD_V2 ? 6 : 7;
	size_t max = role == R_REBUILD_V1 ? 4 : min + 1;
	if (args->n < min || args->n > max)
		return fail(v, -EUCLEAN, "tensor rebuild with %u arguments", args->n);
	const struct pk_val *st = args->items[0];
	if (st->kind != PK_STORAGE)
		return fail(v, -EUCLEAN, "tensor rebuild of something that is not a storage");
	if (args->items[1]->kind != PK_INT || args->items[1]->i < 0)
		return fail(v, -EUCLEAN, "tensor rebuild with a bad storage offset");
	struct pk_tensor *t = mfs_arena_alloc(v->a, sizeof(*t));
	struct pk_val *x = new_val(v, PK_TENSOR);
	if (!t || !x)
		return oom(v);
	int r1 = int_tuple(args->items[2], t->dims);
	int r2 = int_tuple(args->items[3], t->strides);
	if (r1 < 0 || r2 != r1)
		return fail(v, -EUCLEAN, "tensor rebuild: size and stride are not tuples of %d ints "
		            "or less", MFS_MAX_RANK);
	t->rank = (size_t)r1;
	for (size_t k = 0; k < t->rank; k++)
		if (t->dims[k] < 0 || t->strides[k] < 0)
			return fail(v, -EUCLEAN, "tensor rebuild: negative size or stride");
	t->storage = st->sto;
	t->offset = args->items[1]->i;
	t->dtype = st->sto->dtype;
	if (role == R_REBUILD_V3) {
		const struct global *g = as_global(args->items[6]);
		if (!g || g->role != R_DTYPE)
			return fail(v, -EUCLEAN, "_rebuild_tensor_v3 without a dtype");
		t->dtype = g->dtype;
	}
	if (t->dtype == MFS_DT_UNDEFINED)
		return fail(v, -EUCLEAN, "tensor on an untyped storage without a dtype");
	x->t = t;
	return push(v, x);
}

/* REDUCE of an allowed callable on a tuple of arguments. */
static int reduce(struct vm *v, const struct pk_val *fn, struct pk_val *args)
{
	const struct global *g = as_global(fn);
	if (!g) {
		const char *what = fn->kind == PK_STORAGE ? "a storage" :
		                   fn->kind == PK_TENSOR ? "a tensor" : "a value that is no global";
		return fail(v, -EUCLEAN, "call of %s is not allowed", what);
	}
	if (!args || args->kind != PK_TUPLE)
		return fail(v, -EUCLEAN, "call of %s.%s without an argument tuple", g->module, g->name);
	struct pk_val *x;
	switch (g->role) {
	case R_ODICT:
		if (args->n)
			return fail(v, -EUCLEAN, "OrderedDict() with arguments");
		return push(v, new_val(v, PK_DICT));
	case R_REBUILD_V1:
	case R_REBUILD_V2:
	case R_REBUILD_V3:
		return rebuild_tensor(v, g->role, args);
	case R_PARAM:
	case R_PARAM_STATE:
		if (args->n < 1 || args->items[0]->kind != PK_TENSOR)
			return fail(v, -EUCLEAN, "%s of something that is not a tensor", g->name);
		return push(v, args->items[0]);
	case R_FROM_TYPE_V2: {
		/* (func, type, args, state): func(*args) when type is a tensor class. */
		if (args->n != 4 || !as_global(args->items[1]) ||
		    as_global(args->items[1])->role != R_CLASS || args->items[2]->kind != PK_TUPLE)
			return fail(v, -EUCLEAN, "_rebuild_from_type_v2 with bad arguments");
		const struct global *f = as_global(args->items[0]);
		if (!f || (f->role != R_REBUILD_V1 && f->role != R_REBUILD_V2 &&
		           f->role != R_REBUILD_V3 && f->role != R_PARAM))
			return fail(v, -EUCLEAN, "_rebuild_from_type_v2 of a function not allowed");
		return reduce(v, args->items[0], args->items[2]);
	}
	case R_SIZE:
		if (args->n != 1 || args->items[0]->kind != PK_TUPLE)
			return fail(v, -EUCLEAN, "torch.Size of something that is not a tuple");
		return push(v, args->items[0]);
	case R_DEVICE:
		if (args->n < 1 || args->n > 2 || args->items[0]->kind != PK_STR)
			return fail(v, -EUCLEAN, "torch.device of something that is not a string");
		return push(v, args->items[0]);
	case R_ENCODE: {
		/* protocol 2's bytes: _codecs.encode(text, 'latin1'), each char < 256. */
		if (args->n != 2 || args->items[0]->kind != PK_STR || args->items[1]->kind != PK_STR ||
		    strcmp(args->items[1]->s, "latin1") != 0)
			return fail(v, -EUCLEAN, "_codecs.encode other than (str, 'latin1')");
		const struct pk_val *s = args->items[0];
		x = new_val(v, PK_BYTES);
		char *b = x ? mfs_arena_alloc(v->a, s->len + 1) : NULL;
		if (!b)
			return oom(v);
		size_t n = 0;
		for (size_t i = 0; i < s->len; i++) {
			unsigned char c = (unsigned char)s->s[i];
			if (c < 0x80) {
				b[n++] = (char)c;
			} else if ((c == 0xc2 || c == 0xc3) && i + 1 < s->len &&
			           ((unsigned char)s->s[i + 1] & 0xc0) == 0x80) {
				b[n++] = (char)(((c & 0x1f) << 6) | ((unsigned char)s->s[i + 1] & 0x3f));
				i++;
			} else {
				return fail(v, -EUCLEAN, "_codecs.encode of a character past latin1");
			}
		}
		x->s = b;
		x->len = n;
		return push(v, x);
	}
	default:
		return fail(v, -EUCLEAN, "call of %s.%s is not allowed", g->module, g->name);
	}
}

/* BINPERSID: ('storage', <storage class>, key, location, numel[, view_metadata]). */
static int persid(struct vm *v, const struct pk_val *pid)
{
	if (!pid || pid->kind != PK_TUPLE || pid->n < 5 || pid->n > 6 ||
	    pid->items[0]->kind != PK_STR || strcmp(pid->items[0]->s, "storage") != 0)
		return fail(v, -EUCLEAN, "persistent id is not a ('storage', ...) tuple");
	const struct global *g = as_global(pid->items[1]);
	if (!g || g->role != R_STORAGE)
		return fail(v, -EUCLEAN, "persistent id of something that is not a storage class");
	const struct pk_val *key = pid->items[2], *numel = pid->items[4];
	if (pid->items[3]->kind != PK_STR || numel->kind != PK_INT || numel->i < 0)
		return fail(v, -EUCLEAN, "persistent id with a bad location or size");
	struct pk_val *x = new_val(v, PK_STORAGE);
	struct pk_storage *sto = x ? mfs_arena_alloc(v->a, sizeof(*sto)) : NULL;
	if (!sto)
		return oom(v);
	x->sto = sto;
	if (key->kind == PK_STR && key->len && !memchr(key->s, '/', key->len)) {
		sto->key = key->s;
	} else if (key->kind == PK_INT && key->i >= 0) {
		sto->key = mfs_arena_printf(v->a, "%" PRId64, key->i);
		if (!sto->key)
			return oom(v);
	} else {
		return fail(v, -EUCLEAN, "persistent id with a bad storage key");
	}
	sto->dtype = g->dtype;
	sto->numel = numel->i;
	return push(v, x);
}

static uint64_t le(const uint8_t *p, size_t n)
{
	uint64_t x = 0;
	for (size_t i = n; i-- > 0;)
		x = x << 8 | p[i];
	return x;
}

static int memo_put(struct vm *v, uint64_t idx)
{
	struct pk_val *x = top(v);
	if (!x)
		return fail(v, -EUCLEAN, "nothing on the stack to memoize");
	if (idx < v->n_memo)
		return fail(v, -EUCLEAN, "memo entry %" PRIu64 " is already set", idx);
	if (idx != v->n_memo)
		return fail(v, -EUCLEAN, "memo entry %" PRIu64 " skips past the next free one, %zu",
		            idx, v->n_memo);
	if (v->n_memo >= PK_MAX_MEMO)
		return fail(v, -EFBIG, "more than %u memo entries", PK_MAX_MEMO);
	if (v->n_memo == v->cap_memo) {
		size_t cap = v->cap_memo ? v->cap_memo * 2 : 64;
		struct pk_val **m = realloc(v->memo, cap * sizeof(*m));
		if (!m)
			return oom(v);
		v->memo = m;
		v->cap_memo = cap;
	}
	v->memo[v->n_memo++] = x;
	return 0;
}

static int memo_get(struct vm *v, uint64_t idx)
{
	if (idx >= v->n_memo)
		return fail(v, -EUCLEAN, "memo entry %" PRIu64 " is not set", idx);
	return push(v, v->memo[idx]);
}

static int step(struct vm *v, bool *stop)
{
	v->op_at = v->pos;
	v->op = v->p[v->pos++];
	struct pk_val *x, *y, *z;
	size_t first = 0, n = 0;
	int rc;
	switch (v->op) {
	case 0x80:      /* PROTO */
		if (!need(v, 1))
			return short_read(v, 1);
		if (v->p[v->pos] < 2 || v->p[v->pos] > 5)
			return fail(v, -EUCLEAN, "protocol %u is not supported (2 to 5 are)",
			            v->p[v->pos]);
		v->pos++;
		return 0;
	case 0x95:      /* FRAME: a length, then that many bytes of opcodes */
		if (!need(v, 8))
			return short_read(v, 8);
		if (le(v->p + v->pos, 8) > v->len - v->pos - 8)
			return fail(v, -EUCLEAN, "frame of %" PRIu64 " bytes runs past the end",
			            le(v->p + v->pos, 8));
		v->pos += 8;
		return 0;
	case '.':
		if (v->n_marks || v->n_stack != 1)
			return fail(v, -EUCLEAN, "stack holds %zu values and %zu MARKs at the end",
			            v->n_stack, v->n_marks);
		*stop = true;
		return 0;
	case '(':
		if (v->n_marks >= PK_MAX_MARKS)
			return fail(v, -EFBIG, "more than %u open MARKs", PK_MAX_MARKS);
		v->marks[v->n_marks++] = v->n_stack;
		return 0;
	case '0':       /* POP */
		if (pop(v))
			return 0;
		if (v->n_marks && v->n_stack == base(v)) {
			v->n_marks--;
			return 0;
		}
		return fail(v, -EUCLEAN, "stack is empty");
	case '1':       /* POP_MARK */
		return pop_mark(v, &first, &n);
	case '2':       /* DUP */
		if (!(x = top(v)))
			return fail(v, -EUCLEAN, "stack is empty");
		return push(v, x);
	case 'N':
		return push(v, new_val(v, PK_NONE));
	case 0x88:
	case 0x89:
		if ((x = new_val(v, PK_BOOL)) != NULL) {
			x->b = v->op == 0x88;
			x->i = x->b;
		}
		return push(v, x);
	case 'J':
	case 'K':
	case 'M': {
		size_t w = v->op == 'J' ? 4 : v->op == 'K' ? 1 : 2;
		if (!need(v, w))
			return short_read(v, w);
		uint64_t u = le(v->p + v->pos, w);
		v->pos += w;
		if ((x = new_val(v, PK_INT)))
			x->i = w == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
		return push(v, x);
	}
	case 0x8a: {    /* LONG1: n bytes, little-endian two's complement */
		if (!need(v, 1))
			return short_read(v, 1);
		size_t w = v->p[v->pos++];
		if (w > 8)
			return fail(v, -EUCLEAN, "an integer of %zu bytes is too large", w);
		if (!need(v, w))
			return short_read(v, w);
		uint64_t u = le(v->p + v->pos, w);
		if (w && w < 8 && (v->p[v->pos + w - 1] & 0x80))
			u |= ~0ull << (8 * w);
		v->pos += w;
		if ((x = new_val(v, PK_INT)))
			x->i = (int64_t)u;
		return push(v, x);
	}
	case 'G': {     /* BINFLOAT: big-endian double */
		if (!need(v, 8))
			return short_read(v, 8);
		uint64_t u = 0;
		for (int i = 0; i < 8; i++)
			u = u << 8 | v->p[v->pos + i];
		v->pos += 8;
		if ((x = new_val(v, PK_FLOAT)))
			memcpy(&x->f, &u, 8);
		return push(v, x);
	}
	case 'X':
	case 'T':
	case 'B':
		if (!need(v, 4))
			return short_read(v, 4);
		n = (size_t)le(v->p + v->pos, 4);
		v->pos += 4;
		return push_str(v, v->op == 'B' ? PK_BYTES : PK_STR, n);
	case 0x8c:
	case 'U':
	case 'C':
		if (!need(v, 1))
			return short_read(v, 1);
		n = v->p[v->pos++];
		return push_str(v, v->op == 'C' ? PK_BYTES : PK_STR, n);
	case 0x8d:
	case 0x8e:
	case 0x96: {
		if (!need(v, 8))
			return short_read(v, 8);
		uint64_t u = le(v->p + v->pos, 8);
		v->pos += 8;
		return push_str(v, v->op == 0x8d ? PK_STR : PK_BYTES, u);
	}
	case ')':
		return push_tuple(v, NULL, 0);
	case 't':
		if ((rc = pop_mark(v, &first, &n)) < 0)
			return rc;
		return push_tuple(v, v->stack + first, n);
	case 0x85:
	case 0x86:
	case 0x87:
		n = (size_t)(v->op - 0x84);
		if (v->n_stack - base(v) < n)
			return fail(v, -EUCLEAN, "stack holds fewer than %zu values", n);
		v->n_stack -= n;
		return push_tuple(v, v->stack + v->n_stack, n);
	case ']':
		return push(v, new_val(v, PK_LIST));
	case '}':
		return push(v, new_val(v, PK_DICT));
	case 0x8f:
		return push(v, new_val(v, PK_SET));
	case 'l':
	case 'd':
		if ((rc = pop_mark(v, &first, &n)) < 0)
			return rc;
		if (v->op == 'd' && n % 2)
			return fail(v, -EUCLEAN, "an odd count of values for a dict");
		if (!(x = new_val(v, v->op == 'l' ? PK_LIST : PK_DICT)))
			return oom(v);
		for (size_t i = 0; i < n; i += v->op == 'l' ? 1 : 2) {
			rc = v->op == 'l' ? add_item(v, x, NULL, v->stack[first + i]) :
			     add_item(v, x, v->stack[first + i], v->stack[first + i + 1]);
			if (rc < 0)
				return rc;
		}
		return push(v, x);
	case 'a':
		y = pop(v);
		x = top(v);
		if (!y || !x || x->kind != PK_LIST)
			return fail(v, -EUCLEAN, "APPEND to something that is not a list");
		return add_item(v, x, NULL, y);
	case 'e':
	case 0x90:
		if ((rc = pop_mark(v, &first, &n)) < 0)
			return rc;
		x = top(v);
		if (!x || x->kind != (v->op == 'e' ? PK_LIST : PK_SET))
			return fail(v, -EUCLEAN, "%s to something that is not a %s", op_name(v->op),
			            v->op == 'e' ? "list" : "set");
		for (size_t i = 0; i < n; i++)
			if ((rc = add_item(v, x, NULL, v->stack[first + i])) < 0)
				return rc;
		return 0;
	case 's':
		z = pop(v);
		y = pop(v);
		x = top(v);
		if (!z || !y || !x || x->kind != PK_DICT)
			return fail(v, -EUCLEAN, "SETITEM on something that is not a dict");
		return add_item(v, x, y, z);
	case 'u':
		if ((rc = pop_mark(v, &first, &n)) < 0)
			return rc;
		x = top(v);
		if (!x || x->kind != PK_DICT || n % 2)
			return fail(v, -EUCLEAN, "SETITEMS on something that is not a dict, or an odd "
			            "count of values");
		for (size_t i = 0; i < n; i += 2)
			if ((rc = add_item(v, x, v->stack[first + i], v->stack[first + i + 1])) < 0)
				return rc;
		return 0;
	case 'c': {     /* GLOBAL: "module\nname\n" */
		const char *s = (const char *)v->p + v->pos;
		size_t left = v->len - v->pos, lim = left < 1024 ? left : 1024;
		const char *nl1 = memchr(s, '\n', lim);
		const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', lim - (size_t)(nl1 + 1 - s)) : NULL;
		if (!nl2)
			return fail(v, -EUCLEAN, "no module and name lines within %zu bytes", lim);
		v->pos += (size_t)(nl2 + 1 - s);
		return push_global(v, s, (size_t)(nl1 - s), nl1 + 1, (size_t)(nl2 - nl1 - 1));
	}
	case 0x93:      /* STACK_GLOBAL: module and name from the stack */
		y = pop(v);
		x = pop(v);
		if (!x || !y || x->kind != PK_STR || y->kind != PK_STR)
			return fail(v, -EUCLEAN, "module and name are not two strings");
		return push_global(v, x->s, x->len, y->s, y->len);
	case 'R':
		y = pop(v);
		x = pop(v);
		if (!x || !y)
			return fail(v, -EUCLEAN, "stack holds fewer than 2 values");
		return reduce(v, x, y);
	case 'Q':
		if (!(x = pop(v)))
			return fail(v, -EUCLEAN, "stack is empty");
		return persid(v, x);
	case 'b':
		y = pop(v);
		x = top(v);
		if (!y || !x)
			return fail(v, -EUCLEAN, "stack holds fewer than 2 values");
		if (x->kind != PK_DICT && x->kind != PK_TENSOR)
			return fail(v, -EUCLEAN, "BUILD of something that is not a dict or a tensor");
		return 0;       /* the state (a state dict's _metadata) is dropped */
	case 'q':
		if (!need(v, 1))
			return short_read(v, 1);
		return memo_put(v, v->p[v->pos++]);
	case 'r':
		if (!need(v, 4))
			return short_read(v, 4);
		v->pos += 4;
		return memo_put(v, le(v->p + v->pos - 4, 4));
	case 0x94:
		return memo_put(v, v->n_memo);
	case 'h':
		if (!need(v, 1))
			return short_read(v, 1);
		return memo_get(v, v->p[v->pos++]);
	case 'j':
		if (!need(v, 4))
			return short_read(v, 4);
		v->pos += 4;
		return memo_get(v, le(v->p + v->pos - 4, 4));
	default:
		if (op_name(v->op))
			return fail(v, -EUCLEAN, "not allowed");
		return fail(v, -EUCLEAN, "unknown opcode");
	}
}

int pk_load(struct pk_result *out, struct mfs_arena *a, const uint8_t *buf, size_t len,
            const char *display, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	struct vm *v = calloc(1, sizeof(*v));
	if (!v)
		return mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
	v->a = a;
	v->p = buf;
	v->len = len;
	v->display = display;
	v->err = err;
	v->errlen = errlen;
	int rc = 0;
	v->stack = malloc(PK_MAX_STACK * sizeof(*v->stack));
	if (!v->stack) {
		rc = mfs_errf(err, errlen, -ENOMEM, display, "out of memory");
		goto out;
	}
	bool stop = false;
	while (!stop) {
		if (v->pos >= v->len) {
			rc = mfs_errf(err, errlen, -EUCLEAN, display,
			              "pickle ends at offset %zu without STOP", v->len);
			goto out;
		}
		rc = step(v, &stop);
		if (rc < 0)
			goto out;
	}
	out->top = v->stack[0];
	out->globals = v->globals;
	out->n_globals = v->n_globals;
out:
	free(v->stack);
	free(v->memo);
	free(v);
	return rc;
}
