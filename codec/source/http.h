/*
 * codec/source/http.h — remote places (http://, https://, s3://): see http.c.
 * The public settings (mfs_remote_configure) are in <modelfs/model.h>.
 */
#ifndef MODELFS_CODEC_HTTP_H
#define MODELFS_CODEC_HTTP_H

#include "modelfs/model.h"
#include "source/place.h"

/* The URL place kind: a row of the table in place.c. */
extern const struct mfs_place_kind mfs_place_http;

#endif /* MODELFS_CODEC_HTTP_H */
