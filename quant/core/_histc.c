/* Optional accelerator for quant.core.histogram: one pass over float32 values, no temporaries.
 *
 * accumulate(values, factor, counts) adds floor(|v| * factor) of every float32 value v to the int64
 * array `counts`. The caller guarantees |v| * factor < len(counts) (factor is a power of two chosen
 * from max|v|) and that the values are finite. Multiplying by a power of two is exact in float32, and
 * the float->integer conversion truncates, so the bin of every value is the one the numpy fallback
 * (abs, multiply, astype(intp), bincount) computes: the two give identical counts.
 *
 * Four sub-histograms break the store-to-load chain on a hot bin (post-ReLU zeros).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static PyObject *accumulate(PyObject *self, PyObject *args) {
    Py_buffer values, counts;
    float factor;
    if (!PyArg_ParseTuple(args, "y*fw*", &values, &factor, &counts))
        return NULL;
    PyObject *result = NULL;
    if (values.itemsize != 4 || counts.itemsize != 8) {
        PyErr_SetString(PyExc_TypeError, "accumulate needs float32 values and int64 counts");
        goto done;
    }
    Py_ssize_t n = values.len / 4, bins = counts.len / 8;
    const float *x = (const float *)values.buf;
    int64_t *out = (int64_t *)counts.buf;
    int64_t *sub = calloc((size_t)bins * 4, sizeof(int64_t));
    if (!sub) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {
        Py_ssize_t a = (Py_ssize_t)(fabsf(x[i]) * factor), b = (Py_ssize_t)(fabsf(x[i + 1]) * factor);
        Py_ssize_t c = (Py_ssize_t)(fabsf(x[i + 2]) * factor), d = (Py_ssize_t)(fabsf(x[i + 3]) * factor);
        if (a >= bins || b >= bins || c >= bins || d >= bins) { bad = i; break; }
        sub[a]++; sub[bins + b]++; sub[2 * bins + c]++; sub[3 * bins + d]++;
    }
    if (bad < 0)
        for (; i < n; i++) {
            Py_ssize_t a = (Py_ssize_t)(fabsf(x[i]) * factor);
            if (a >= bins) { bad = i; break; }
            sub[a]++;
        }
    if (bad < 0)
        for (Py_ssize_t k = 0; k < bins; k++)
            out[k] += sub[k] + sub[bins + k] + sub[2 * bins + k] + sub[3 * bins + k];
    Py_END_ALLOW_THREADS
    free(sub);
    if (bad >= 0) {
        PyErr_SetString(PyExc_ValueError, "value outside the histogram range (not finite, or factor too large)");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&values);
    PyBuffer_Release(&counts);
    return result;
}

static PyMethodDef methods[] = {
    {"accumulate", accumulate, METH_VARARGS, "accumulate(float32 values, factor, int64 counts): counts[floor(|v|*factor)] += 1"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_histc", "Histogram accelerator", -1, methods};

PyMODINIT_FUNC PyInit__histc(void) { return PyModule_Create(&module); }
