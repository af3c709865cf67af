-- Image search: tags, free-form properties and members as rows, so that list filters are index
-- lookups. `images.tags` and `images.properties` stay the display copy; both are written together.

CREATE TABLE image_tags (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (image_id, tag)
);
CREATE INDEX image_tags_tag ON image_tags (tag, image_id);

CREATE TABLE image_properties (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
);
CREATE INDEX image_properties_value ON image_properties (name, value, image_id);

-- Projects an image with `shared` visibility is offered to; status pending/accepted/rejected.
CREATE TABLE image_members (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (image_id, member)
);
CREATE INDEX image_members_member ON image_members (member, status, image_id);

-- The default order over every image (public and community listings walk it).
CREATE INDEX images_created ON images (created_at, id);
