--
-- PostgreSQL database dump
--

\restrict UcuCEeu7YJB2bca4fQX3q2bWv59YQscPkxbykxtwr12nNnmsFmPKpjd80dUTak9

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: release_0_1; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA release_0_1;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: audit_event; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.audit_event (
    id bigint NOT NULL,
    recorded bigint NOT NULL,
    client_id character varying(128),
    interaction character varying(32) NOT NULL,
    action character varying(1) NOT NULL,
    method character varying(8) NOT NULL,
    path text NOT NULL,
    query text,
    entity character varying(256),
    entity_type character varying(64),
    status integer NOT NULL,
    detail text,
    address character varying(64)
);


--
-- Name: audit_event_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.audit_event_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: audit_event_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.audit_event_id_seq OWNED BY release_0_1.audit_event.id;


--
-- Name: auth_assertion; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.auth_assertion (
    client_id character varying(128) NOT NULL,
    jti character varying(256) NOT NULL,
    expires bigint NOT NULL
);


--
-- Name: auth_client; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.auth_client (
    client_id character varying(128) NOT NULL,
    scope text NOT NULL,
    jwks text,
    jwks_url text,
    created bigint NOT NULL
);


--
-- Name: bulk_chunk; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.bulk_chunk (
    file_id bigint NOT NULL,
    "position" integer NOT NULL,
    data text NOT NULL
);


--
-- Name: bulk_file; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.bulk_file (
    id bigint NOT NULL,
    job_id character varying(32) NOT NULL,
    ordinal integer NOT NULL,
    kind character varying(8) NOT NULL,
    res_type character varying(64) NOT NULL,
    count bigint NOT NULL,
    size bigint NOT NULL,
    chunks integer NOT NULL
);


--
-- Name: bulk_file_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.bulk_file_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: bulk_file_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.bulk_file_id_seq OWNED BY release_0_1.bulk_file.id;


--
-- Name: bulk_job; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.bulk_job (
    id character varying(32) NOT NULL,
    status character varying(16) NOT NULL,
    request text NOT NULL,
    parameters text NOT NULL,
    at_seq bigint NOT NULL,
    transaction_time bigint NOT NULL,
    created bigint NOT NULL,
    finished bigint,
    lease_owner character varying(64),
    lease_expires bigint,
    cursor text,
    exported bigint NOT NULL,
    error text
);


--
-- Name: bulk_job_client; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.bulk_job_client (
    job_id character varying(32) NOT NULL,
    client_id character varying(128) NOT NULL
);


--
-- Name: commit_clock; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.commit_clock (
    id integer NOT NULL,
    seq bigint NOT NULL,
    last_updated bigint NOT NULL
);


--
-- Name: commit_clock_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.commit_clock_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: commit_clock_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.commit_clock_id_seq OWNED BY release_0_1.commit_clock.id;


--
-- Name: idx_composite; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_composite (
    id bigint NOT NULL,
    res_pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    seq_from bigint NOT NULL,
    seq_to bigint,
    c1_system text,
    c1_code text,
    c2_system text,
    c2_code text,
    c2_text text,
    c2_low double precision,
    c2_high double precision
);


--
-- Name: idx_composite_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.idx_composite_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: idx_composite_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.idx_composite_id_seq OWNED BY release_0_1.idx_composite.id;


--
-- Name: idx_date; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_date (
    id bigint NOT NULL,
    res_pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    seq_from bigint NOT NULL,
    seq_to bigint,
    low bigint NOT NULL,
    high bigint NOT NULL
);


--
-- Name: idx_date_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.idx_date_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: idx_date_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.idx_date_id_seq OWNED BY release_0_1.idx_date.id;


--
-- Name: idx_date_width; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_date_width (
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    width bigint NOT NULL
);


--
-- Name: idx_number; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_number (
    id bigint NOT NULL,
    res_pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    seq_from bigint NOT NULL,
    seq_to bigint,
    value double precision NOT NULL,
    low double precision NOT NULL,
    high double precision NOT NULL
);


--
-- Name: idx_number_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.idx_number_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: idx_number_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.idx_number_id_seq OWNED BY release_0_1.idx_number.id;


--
-- Name: idx_quantity; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_quantity (
    id bigint NOT NULL,
    res_pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    seq_from bigint NOT NULL,
    seq_to bigint,
    system text,
    code text,
    value double precision,
    low double precision,
    high double precision
);


--
-- Name: idx_quantity_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.idx_quantity_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: idx_quantity_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.idx_quantity_id_seq OWNED BY release_0_1.idx_quantity.id;


--
-- Name: idx_reference; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_reference (
    id bigint NOT NULL,
    res_pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    seq_from bigint NOT NULL,
    seq_to bigint,
    target_type character varying(64),
    target_id text,
    url text,
    identifier_system text,
    identifier_value text
);


--
-- Name: idx_reference_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.idx_reference_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: idx_reference_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.idx_reference_id_seq OWNED BY release_0_1.idx_reference.id;


--
-- Name: idx_string; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_string (
    id bigint NOT NULL,
    res_pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    seq_from bigint NOT NULL,
    seq_to bigint,
    value text NOT NULL COLLATE pg_catalog."C",
    exact text NOT NULL
);


--
-- Name: idx_string_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.idx_string_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: idx_string_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.idx_string_id_seq OWNED BY release_0_1.idx_string.id;


--
-- Name: idx_token; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_token (
    id bigint NOT NULL,
    res_pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    seq_from bigint NOT NULL,
    seq_to bigint,
    system text,
    code text,
    text text,
    type_system text,
    type_code text
);


--
-- Name: idx_token_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.idx_token_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: idx_token_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.idx_token_id_seq OWNED BY release_0_1.idx_token.id;


--
-- Name: idx_uri; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.idx_uri (
    id bigint NOT NULL,
    res_pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    param character varying(64) NOT NULL,
    seq_from bigint NOT NULL,
    seq_to bigint,
    uri text NOT NULL
);


--
-- Name: idx_uri_id_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.idx_uri_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: idx_uri_id_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.idx_uri_id_seq OWNED BY release_0_1.idx_uri.id;


--
-- Name: resource; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.resource (
    pk bigint NOT NULL,
    res_type character varying(64) NOT NULL,
    res_id character varying(64) NOT NULL,
    version integer NOT NULL,
    seq bigint NOT NULL,
    last_updated bigint NOT NULL,
    deleted boolean NOT NULL,
    content text
);


--
-- Name: resource_pk_seq; Type: SEQUENCE; Schema: release_0_1; Owner: -
--

CREATE SEQUENCE release_0_1.resource_pk_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: resource_pk_seq; Type: SEQUENCE OWNED BY; Schema: release_0_1; Owner: -
--

ALTER SEQUENCE release_0_1.resource_pk_seq OWNED BY release_0_1.resource.pk;


--
-- Name: resource_version; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.resource_version (
    seq bigint NOT NULL,
    res_pk bigint NOT NULL,
    superseded bigint,
    res_type character varying(64) NOT NULL,
    res_id character varying(64) NOT NULL,
    version integer NOT NULL,
    last_updated bigint NOT NULL,
    method character varying(8) NOT NULL,
    deleted boolean NOT NULL,
    content text
);


--
-- Name: store_info; Type: TABLE; Schema: release_0_1; Owner: -
--

CREATE TABLE release_0_1.store_info (
    key character varying(64) NOT NULL,
    value text NOT NULL
);


--
-- Name: audit_event id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.audit_event ALTER COLUMN id SET DEFAULT nextval('release_0_1.audit_event_id_seq'::regclass);


--
-- Name: bulk_file id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_file ALTER COLUMN id SET DEFAULT nextval('release_0_1.bulk_file_id_seq'::regclass);


--
-- Name: commit_clock id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.commit_clock ALTER COLUMN id SET DEFAULT nextval('release_0_1.commit_clock_id_seq'::regclass);


--
-- Name: idx_composite id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_composite ALTER COLUMN id SET DEFAULT nextval('release_0_1.idx_composite_id_seq'::regclass);


--
-- Name: idx_date id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_date ALTER COLUMN id SET DEFAULT nextval('release_0_1.idx_date_id_seq'::regclass);


--
-- Name: idx_number id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_number ALTER COLUMN id SET DEFAULT nextval('release_0_1.idx_number_id_seq'::regclass);


--
-- Name: idx_quantity id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_quantity ALTER COLUMN id SET DEFAULT nextval('release_0_1.idx_quantity_id_seq'::regclass);


--
-- Name: idx_reference id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_reference ALTER COLUMN id SET DEFAULT nextval('release_0_1.idx_reference_id_seq'::regclass);


--
-- Name: idx_string id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_string ALTER COLUMN id SET DEFAULT nextval('release_0_1.idx_string_id_seq'::regclass);


--
-- Name: idx_token id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_token ALTER COLUMN id SET DEFAULT nextval('release_0_1.idx_token_id_seq'::regclass);


--
-- Name: idx_uri id; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_uri ALTER COLUMN id SET DEFAULT nextval('release_0_1.idx_uri_id_seq'::regclass);


--
-- Name: resource pk; Type: DEFAULT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.resource ALTER COLUMN pk SET DEFAULT nextval('release_0_1.resource_pk_seq'::regclass);


--
-- Data for Name: audit_event; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.audit_event VALUES (1, 1795969648992970, NULL, 'create', 'C', 'POST', '/dicomweb/studies', NULL, NULL, 'ImagingStudy', 200, NULL, 'testclient');
INSERT INTO release_0_1.audit_event VALUES (2, 1795969649016822, NULL, 'search-type', 'E', 'GET', '/fhir/ImagingStudy', NULL, NULL, 'ImagingStudy', 200, NULL, 'testclient');
INSERT INTO release_0_1.audit_event VALUES (3, 1795969649054320, NULL, 'create', 'C', 'POST', '/fhir/Observation', NULL, 'Observation/a343616e-62fe-42d9-a450-cbf6d3a7bae2', 'Observation', 201, NULL, 'testclient');
INSERT INTO release_0_1.audit_event VALUES (4, 1795969649099691, NULL, 'update', 'U', 'PUT', '/fhir/Observation/a343616e-62fe-42d9-a450-cbf6d3a7bae2', NULL, 'Observation/a343616e-62fe-42d9-a450-cbf6d3a7bae2', 'Observation', 200, NULL, 'testclient');
INSERT INTO release_0_1.audit_event VALUES (5, 1795969649191829, NULL, 'create', 'C', 'POST', '/fhir/Condition', NULL, 'Condition/bcfa4f5e-02b4-48e6-a8e0-2fe6b9acd89d', 'Condition', 201, NULL, 'testclient');
INSERT INTO release_0_1.audit_event VALUES (6, 1795969649259016, NULL, 'create', 'C', 'POST', '/fhir/Observation', NULL, 'Observation/6b919105-6ade-47d2-b988-f4f456573c13', 'Observation', 201, NULL, 'testclient');
INSERT INTO release_0_1.audit_event VALUES (7, 1795969649511105, NULL, 'delete', 'D', 'DELETE', '/fhir/Observation/6b919105-6ade-47d2-b988-f4f456573c13', NULL, 'Observation/6b919105-6ade-47d2-b988-f4f456573c13', 'Observation', 200, NULL, 'testclient');
INSERT INTO release_0_1.audit_event VALUES (8, 1795969649530370, NULL, 'history-system', 'R', 'GET', '/fhir/_history', '_since=2026-11-29T16%3A27%3A29.034135Z', NULL, NULL, 200, NULL, 'testclient');


--
-- Data for Name: auth_assertion; Type: TABLE DATA; Schema: release_0_1; Owner: -
--



--
-- Data for Name: auth_client; Type: TABLE DATA; Schema: release_0_1; Owner: -
--



--
-- Data for Name: bulk_chunk; Type: TABLE DATA; Schema: release_0_1; Owner: -
--



--
-- Data for Name: bulk_file; Type: TABLE DATA; Schema: release_0_1; Owner: -
--



--
-- Data for Name: bulk_job; Type: TABLE DATA; Schema: release_0_1; Owner: -
--



--
-- Data for Name: bulk_job_client; Type: TABLE DATA; Schema: release_0_1; Owner: -
--



--
-- Data for Name: commit_clock; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.commit_clock VALUES (1, 9, 1795969649379441);


--
-- Data for Name: idx_composite; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.idx_composite VALUES (1, 5, 'Observation', 'code-value-quantity', 5, 6, 'http://loinc.org', '8310-5', 'http://unitsofmeasure.org', 'Cel', NULL, 37.2, 37.2);
INSERT INTO release_0_1.idx_composite VALUES (2, 5, 'Observation', 'combo-code-value-quantity', 5, 6, 'http://loinc.org', '8310-5', 'http://unitsofmeasure.org', 'Cel', NULL, 37.2, 37.2);
INSERT INTO release_0_1.idx_composite VALUES (3, 5, 'Observation', 'code-value-quantity', 6, NULL, 'http://loinc.org', '8310-5', 'http://unitsofmeasure.org', 'Cel', NULL, 37.2, 37.2);
INSERT INTO release_0_1.idx_composite VALUES (4, 5, 'Observation', 'combo-code-value-quantity', 6, NULL, 'http://loinc.org', '8310-5', 'http://unitsofmeasure.org', 'Cel', NULL, 37.2, 37.2);
INSERT INTO release_0_1.idx_composite VALUES (5, 7, 'Observation', 'code-value-quantity', 8, 9, 'http://loinc.org', '8310-5', 'http://unitsofmeasure.org', 'Cel', NULL, 37.2, 37.2);
INSERT INTO release_0_1.idx_composite VALUES (6, 7, 'Observation', 'combo-code-value-quantity', 8, 9, 'http://loinc.org', '8310-5', 'http://unitsofmeasure.org', 'Cel', NULL, 37.2, 37.2);


--
-- Data for Name: idx_date; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.idx_date VALUES (1, 1, 'Patient', 'birthdate', 1, NULL, -315619200000000, -283996800000001);
INSERT INTO release_0_1.idx_date VALUES (2, 3, 'ImagingStudy', 'started', 3, NULL, 1074515250000000, 1074515250999999);
INSERT INTO release_0_1.idx_date VALUES (3, 4, 'Provenance', 'recorded', 4, NULL, 1795969648920321, 1795969648920321);


--
-- Data for Name: idx_date_width; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.idx_date_width VALUES ('Patient', 'birthdate', 31622399999999);
INSERT INTO release_0_1.idx_date_width VALUES ('ImagingStudy', 'started', 999999);
INSERT INTO release_0_1.idx_date_width VALUES ('Provenance', 'recorded', 0);


--
-- Data for Name: idx_number; Type: TABLE DATA; Schema: release_0_1; Owner: -
--



--
-- Data for Name: idx_quantity; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.idx_quantity VALUES (1, 5, 'Observation', 'combo-value-quantity', 5, 6, 'http://unitsofmeasure.org', 'Cel', 37.2, 37.15, 37.25);
INSERT INTO release_0_1.idx_quantity VALUES (2, 5, 'Observation', 'value-quantity', 5, 6, 'http://unitsofmeasure.org', 'Cel', 37.2, 37.15, 37.25);
INSERT INTO release_0_1.idx_quantity VALUES (3, 5, 'Observation', 'combo-value-quantity', 6, NULL, 'http://unitsofmeasure.org', 'Cel', 37.2, 37.15, 37.25);
INSERT INTO release_0_1.idx_quantity VALUES (4, 5, 'Observation', 'value-quantity', 6, NULL, 'http://unitsofmeasure.org', 'Cel', 37.2, 37.15, 37.25);
INSERT INTO release_0_1.idx_quantity VALUES (5, 7, 'Observation', 'combo-value-quantity', 8, 9, 'http://unitsofmeasure.org', 'Cel', 37.2, 37.15, 37.25);
INSERT INTO release_0_1.idx_quantity VALUES (6, 7, 'Observation', 'value-quantity', 8, 9, 'http://unitsofmeasure.org', 'Cel', 37.2, 37.15, 37.25);


--
-- Data for Name: idx_reference; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.idx_reference VALUES (1, 3, 'ImagingStudy', 'patient', 3, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (2, 3, 'ImagingStudy', 'performer', 3, NULL, 'Device', 'e8a9e3d6-fbcd-5138-b237-cd513a08ebfc', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (3, 3, 'ImagingStudy', 'subject', 3, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (4, 4, 'Provenance', 'entity', 4, NULL, NULL, NULL, NULL, 'urn:dicom:uid', 'urn:oid:1.2.826.0.1.3680043.10.1234.901');
INSERT INTO release_0_1.idx_reference VALUES (5, 4, 'Provenance', 'patient', 4, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (6, 4, 'Provenance', 'target', 4, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (7, 4, 'Provenance', 'target', 4, NULL, 'Device', 'e8a9e3d6-fbcd-5138-b237-cd513a08ebfc', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (8, 4, 'Provenance', 'target', 4, NULL, 'ImagingStudy', '34d08f22-c696-5805-ad0e-0a045e0302d1', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (9, 5, 'Observation', 'patient', 5, 6, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (10, 5, 'Observation', 'subject', 5, 6, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (11, 5, 'Observation', 'patient', 6, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (12, 5, 'Observation', 'subject', 6, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (13, 6, 'Condition', 'patient', 7, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (14, 6, 'Condition', 'subject', 7, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (15, 7, 'Observation', 'patient', 8, 9, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_reference VALUES (16, 7, 'Observation', 'subject', 8, 9, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', NULL, NULL, NULL);


--
-- Data for Name: idx_string; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.idx_string VALUES (1, 2, 'Device', 'device-name', 2, NULL, 'rhapsode', 'RHAPSODE');
INSERT INTO release_0_1.idx_string VALUES (2, 2, 'Device', 'manufacturer', 2, NULL, 'ge medical systems', 'GE MEDICAL SYSTEMS');


--
-- Data for Name: idx_token; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.idx_token VALUES (1, 1, 'Patient', '_security', 1, NULL, 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', 'PSEUDED', 'pseudonymized', NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (2, 1, 'Patient', 'deceased', 1, NULL, NULL, 'false', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (3, 1, 'Patient', 'gender', 1, NULL, NULL, 'female', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (4, 1, 'Patient', 'identifier', 1, NULL, 'urn:fhir-bridge:patient-id', 'dbd97e5b283e546fce84db07d34ea42c9de642ba16215b3cb2432c82d4b432bb', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (5, 2, 'Device', 'type', 2, NULL, 'http://dicom.nema.org/resources/ontology/DCM', 'CT', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (6, 3, 'ImagingStudy', '_security', 3, NULL, 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', 'PSEUDED', 'pseudonymized', NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (7, 3, 'ImagingStudy', 'identifier', 3, NULL, 'urn:dicom:uid', 'urn:oid:1.2.826.0.1.3680043.10.1234.901', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (8, 3, 'ImagingStudy', 'identifier', 3, NULL, NULL, '00051526ef1ddf8ef120859dec8af26b4647380d07fa71a4ba3804e1d01974e3', NULL, 'http://terminology.hl7.org/CodeSystem/v2-0203', 'ACSN');
INSERT INTO release_0_1.idx_token VALUES (9, 3, 'ImagingStudy', 'dicom-class', 3, NULL, 'urn:ietf:rfc:3986', 'urn:oid:1.2.840.10008.5.1.4.1.1.2', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (10, 3, 'ImagingStudy', 'instance', 3, NULL, NULL, '1.2.826.0.1.3680043.10.1234.901.1.1', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (11, 3, 'ImagingStudy', 'instance', 3, NULL, NULL, '1.2.826.0.1.3680043.10.1234.901.1.2', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (12, 3, 'ImagingStudy', 'instance', 3, NULL, NULL, '1.2.826.0.1.3680043.10.1234.901.2.1', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (13, 3, 'ImagingStudy', 'instance', 3, NULL, NULL, '1.2.826.0.1.3680043.10.1234.901.2.2', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (14, 3, 'ImagingStudy', 'modality', 3, NULL, 'http://dicom.nema.org/resources/ontology/DCM', 'CT', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (15, 3, 'ImagingStudy', 'series', 3, NULL, NULL, '1.2.826.0.1.3680043.10.1234.901.1', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (16, 3, 'ImagingStudy', 'series', 3, NULL, NULL, '1.2.826.0.1.3680043.10.1234.901.2', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (17, 3, 'ImagingStudy', 'status', 3, NULL, NULL, 'available', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (18, 4, 'Provenance', '_security', 4, NULL, 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', 'PSEUDED', 'pseudonymized', NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (19, 4, 'Provenance', 'agent-type', 4, NULL, 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', 'performer', 'performer', NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (20, 4, 'Provenance', 'agent-type', 4, NULL, 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', 'assembler', 'assembler', NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (21, 5, 'Observation', 'code', 5, 6, 'http://loinc.org', '8310-5', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (22, 5, 'Observation', 'combo-code', 5, 6, 'http://loinc.org', '8310-5', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (23, 5, 'Observation', 'status', 5, 6, NULL, 'preliminary', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (24, 5, 'Observation', 'code', 6, NULL, 'http://loinc.org', '8310-5', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (25, 5, 'Observation', 'combo-code', 6, NULL, 'http://loinc.org', '8310-5', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (26, 5, 'Observation', 'status', 6, NULL, NULL, 'final', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (27, 6, 'Condition', 'code', 7, NULL, 'http://snomed.info/sct', '254637007', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (28, 7, 'Observation', 'code', 8, 9, 'http://loinc.org', '8310-5', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (29, 7, 'Observation', 'combo-code', 8, 9, 'http://loinc.org', '8310-5', NULL, NULL, NULL);
INSERT INTO release_0_1.idx_token VALUES (30, 7, 'Observation', 'status', 8, 9, NULL, 'cancelled', NULL, NULL, NULL);


--
-- Data for Name: idx_uri; Type: TABLE DATA; Schema: release_0_1; Owner: -
--



--
-- Data for Name: resource; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.resource VALUES (1, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', 1, 1, 1795969648920321, false, '{"resourceType":"Patient","id":"0f00d496-c956-5612-bcc7-9885cbf16bee","identifier":[{"system":"urn:fhir-bridge:patient-id","value":"dbd97e5b283e546fce84db07d34ea42c9de642ba16215b3cb2432c82d4b432bb"}],"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"PSEUDED","display":"pseudonymized"}],"versionId":"1","lastUpdated":"2026-11-29T16:27:28.920321Z"},"gender":"female","birthDate":"1960"}');
INSERT INTO release_0_1.resource VALUES (2, 'Device', 'e8a9e3d6-fbcd-5138-b237-cd513a08ebfc', 1, 2, 1795969648920321, false, '{"resourceType":"Device","id":"e8a9e3d6-fbcd-5138-b237-cd513a08ebfc","manufacturer":"GE MEDICAL SYSTEMS","deviceName":[{"name":"RHAPSODE","type":"model-name"}],"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}]},"meta":{"versionId":"1","lastUpdated":"2026-11-29T16:27:28.920321Z"}}');
INSERT INTO release_0_1.resource VALUES (3, 'ImagingStudy', '34d08f22-c696-5805-ad0e-0a045e0302d1', 1, 3, 1795969648920321, false, '{"resourceType":"ImagingStudy","id":"34d08f22-c696-5805-ad0e-0a045e0302d1","status":"available","subject":{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee"},"started":"2004-01-19T07:27:30-05:00","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"PSEUDED","display":"pseudonymized"}],"versionId":"1","lastUpdated":"2026-11-29T16:27:28.920321Z"},"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.826.0.1.3680043.10.1234.901"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"00051526ef1ddf8ef120859dec8af26b4647380d07fa71a4ba3804e1d01974e3"}],"modality":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}],"numberOfSeries":2,"numberOfInstances":4,"series":[{"uid":"1.2.826.0.1.3680043.10.1234.901.1","number":1,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"started":"1997-04-30T11:27:49-05:00","performer":[{"actor":{"reference":"Device/e8a9e3d6-fbcd-5138-b237-cd513a08ebfc"}}],"numberOfInstances":2,"instance":[{"uid":"1.2.826.0.1.3680043.10.1234.901.1.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":1,"title":"ORIGINAL\\PRIMARY\\AXIAL"},{"uid":"1.2.826.0.1.3680043.10.1234.901.1.2","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":2,"title":"ORIGINAL\\PRIMARY\\AXIAL"}]},{"uid":"1.2.826.0.1.3680043.10.1234.901.2","number":2,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"started":"1997-04-30T11:27:49-05:00","performer":[{"actor":{"reference":"Device/e8a9e3d6-fbcd-5138-b237-cd513a08ebfc"}}],"numberOfInstances":2,"instance":[{"uid":"1.2.826.0.1.3680043.10.1234.901.2.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":1,"title":"ORIGINAL\\PRIMARY\\AXIAL"},{"uid":"1.2.826.0.1.3680043.10.1234.901.2.2","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":2,"title":"ORIGINAL\\PRIMARY\\AXIAL"}]}]}');
INSERT INTO release_0_1.resource VALUES (4, 'Provenance', '3e96e272-f8a5-4445-b72a-f03310e18067', 1, 4, 1795969648920321, false, '{"resourceType":"Provenance","id":"3e96e272-f8a5-4445-b72a-f03310e18067","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>4 DICOM instances of 1 studies received by STOW-RS from testclient (user agent testclient; AE title CLUNIE1).</p><ul><li>De-identified per DICOM PS3.15 Annex E (Basic Application Confidentiality Profile, DCM 113100) with the Retain Longitudinal Temporal Information Full Dates (DCM 113106) and Retain Patient Characteristics (DCM 113108) options.</li><li>PatientID: replaced by a keyed pseudonym (HMAC-SHA256 of the identifier system and value with the site secret).</li><li>PatientBirthDate: reduced to the year.</li><li>Replaced by a keyed hash: AccessionNumber.</li><li>Patient names are never read; removed: ReferringPhysicianName, StudyDescription, SeriesDescription, ReasonForTheRequestedProcedure, ReasonForRequestedProcedureCodeSequence, ProcedureCodeSequence, DocumentTitle, TextValue, SegmentLabel, TrackingID, ROIName.</li><li>Study, series and instance UIDs: kept (Retain UIDs Option, DCM 113110).</li><li>UIDs that are not conformant DICOM UIDs (PS3.5 9.1) are replaced by 2.25 UIDs derived from them with the site secret; each such UID as sent is named as a derivation entity.</li><li>Structured content (SR content trees, segments, ROIs): coded content kept, free text removed like the descriptors, person names never read (Clean Structured Content Option, DCM 113104, applied by rule).</li></ul></div>"},"target":[{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee/_history/1"},{"reference":"Device/e8a9e3d6-fbcd-5138-b237-cd513a08ebfc/_history/1"},{"reference":"ImagingStudy/34d08f22-c696-5805-ad0e-0a045e0302d1/_history/1"}],"recorded":"2026-11-29T16:27:28.920321Z","activity":{"text":"DICOM ingest (STOW-RS)","coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"113100","display":"Basic Application Confidentiality Profile"}]},"agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"performer","display":"Performer"}]},"who":{"display":"STOW-RS sender: testclient (user agent testclient; AE title CLUNIE1)"}},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"assembler","display":"Assembler"}]},"who":{"display":"fhir-bridge 0.1.0 on vm"}}],"entity":[{"role":"source","what":{"identifier":{"system":"urn:dicom:uid","value":"urn:oid:1.2.826.0.1.3680043.10.1234.901"},"display":"DICOM study: 4 instances received"}}],"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"PSEUDED","display":"pseudonymized"}],"versionId":"1","lastUpdated":"2026-11-29T16:27:28.920321Z"},"policy":["https://dicom.nema.org/medical/dicom/current/output/chtml/part15/chapter_E.html"]}');
INSERT INTO release_0_1.resource VALUES (5, 'Observation', 'a343616e-62fe-42d9-a450-cbf6d3a7bae2', 2, 6, 1795969649063085, false, '{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee"},"code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"valueQuantity":{"value":37.2,"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"},"id":"a343616e-62fe-42d9-a450-cbf6d3a7bae2","meta":{"versionId":"2","lastUpdated":"2026-11-29T16:27:29.063085Z"}}');
INSERT INTO release_0_1.resource VALUES (6, 'Condition', 'bcfa4f5e-02b4-48e6-a8e0-2fe6b9acd89d', 1, 7, 1795969649131939, false, '{"resourceType":"Condition","subject":{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"254637007"}]},"id":"bcfa4f5e-02b4-48e6-a8e0-2fe6b9acd89d","meta":{"versionId":"1","lastUpdated":"2026-11-29T16:27:29.131939Z"}}');
INSERT INTO release_0_1.resource VALUES (7, 'Observation', '6b919105-6ade-47d2-b988-f4f456573c13', 2, 9, 1795969649379441, true, NULL);


--
-- Data for Name: resource_version; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.resource_version VALUES (1, 1, NULL, 'Patient', '0f00d496-c956-5612-bcc7-9885cbf16bee', 1, 1795969648920321, 'PUT', false, '{"resourceType":"Patient","id":"0f00d496-c956-5612-bcc7-9885cbf16bee","identifier":[{"system":"urn:fhir-bridge:patient-id","value":"dbd97e5b283e546fce84db07d34ea42c9de642ba16215b3cb2432c82d4b432bb"}],"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"PSEUDED","display":"pseudonymized"}],"versionId":"1","lastUpdated":"2026-11-29T16:27:28.920321Z"},"gender":"female","birthDate":"1960"}');
INSERT INTO release_0_1.resource_version VALUES (2, 2, NULL, 'Device', 'e8a9e3d6-fbcd-5138-b237-cd513a08ebfc', 1, 1795969648920321, 'PUT', false, '{"resourceType":"Device","id":"e8a9e3d6-fbcd-5138-b237-cd513a08ebfc","manufacturer":"GE MEDICAL SYSTEMS","deviceName":[{"name":"RHAPSODE","type":"model-name"}],"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}]},"meta":{"versionId":"1","lastUpdated":"2026-11-29T16:27:28.920321Z"}}');
INSERT INTO release_0_1.resource_version VALUES (3, 3, NULL, 'ImagingStudy', '34d08f22-c696-5805-ad0e-0a045e0302d1', 1, 1795969648920321, 'PUT', false, '{"resourceType":"ImagingStudy","id":"34d08f22-c696-5805-ad0e-0a045e0302d1","status":"available","subject":{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee"},"started":"2004-01-19T07:27:30-05:00","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"PSEUDED","display":"pseudonymized"}],"versionId":"1","lastUpdated":"2026-11-29T16:27:28.920321Z"},"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.826.0.1.3680043.10.1234.901"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"00051526ef1ddf8ef120859dec8af26b4647380d07fa71a4ba3804e1d01974e3"}],"modality":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}],"numberOfSeries":2,"numberOfInstances":4,"series":[{"uid":"1.2.826.0.1.3680043.10.1234.901.1","number":1,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"started":"1997-04-30T11:27:49-05:00","performer":[{"actor":{"reference":"Device/e8a9e3d6-fbcd-5138-b237-cd513a08ebfc"}}],"numberOfInstances":2,"instance":[{"uid":"1.2.826.0.1.3680043.10.1234.901.1.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":1,"title":"ORIGINAL\\PRIMARY\\AXIAL"},{"uid":"1.2.826.0.1.3680043.10.1234.901.1.2","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":2,"title":"ORIGINAL\\PRIMARY\\AXIAL"}]},{"uid":"1.2.826.0.1.3680043.10.1234.901.2","number":2,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"started":"1997-04-30T11:27:49-05:00","performer":[{"actor":{"reference":"Device/e8a9e3d6-fbcd-5138-b237-cd513a08ebfc"}}],"numberOfInstances":2,"instance":[{"uid":"1.2.826.0.1.3680043.10.1234.901.2.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":1,"title":"ORIGINAL\\PRIMARY\\AXIAL"},{"uid":"1.2.826.0.1.3680043.10.1234.901.2.2","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":2,"title":"ORIGINAL\\PRIMARY\\AXIAL"}]}]}');
INSERT INTO release_0_1.resource_version VALUES (4, 4, NULL, 'Provenance', '3e96e272-f8a5-4445-b72a-f03310e18067', 1, 1795969648920321, 'POST', false, '{"resourceType":"Provenance","id":"3e96e272-f8a5-4445-b72a-f03310e18067","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>4 DICOM instances of 1 studies received by STOW-RS from testclient (user agent testclient; AE title CLUNIE1).</p><ul><li>De-identified per DICOM PS3.15 Annex E (Basic Application Confidentiality Profile, DCM 113100) with the Retain Longitudinal Temporal Information Full Dates (DCM 113106) and Retain Patient Characteristics (DCM 113108) options.</li><li>PatientID: replaced by a keyed pseudonym (HMAC-SHA256 of the identifier system and value with the site secret).</li><li>PatientBirthDate: reduced to the year.</li><li>Replaced by a keyed hash: AccessionNumber.</li><li>Patient names are never read; removed: ReferringPhysicianName, StudyDescription, SeriesDescription, ReasonForTheRequestedProcedure, ReasonForRequestedProcedureCodeSequence, ProcedureCodeSequence, DocumentTitle, TextValue, SegmentLabel, TrackingID, ROIName.</li><li>Study, series and instance UIDs: kept (Retain UIDs Option, DCM 113110).</li><li>UIDs that are not conformant DICOM UIDs (PS3.5 9.1) are replaced by 2.25 UIDs derived from them with the site secret; each such UID as sent is named as a derivation entity.</li><li>Structured content (SR content trees, segments, ROIs): coded content kept, free text removed like the descriptors, person names never read (Clean Structured Content Option, DCM 113104, applied by rule).</li></ul></div>"},"target":[{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee/_history/1"},{"reference":"Device/e8a9e3d6-fbcd-5138-b237-cd513a08ebfc/_history/1"},{"reference":"ImagingStudy/34d08f22-c696-5805-ad0e-0a045e0302d1/_history/1"}],"recorded":"2026-11-29T16:27:28.920321Z","activity":{"text":"DICOM ingest (STOW-RS)","coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"113100","display":"Basic Application Confidentiality Profile"}]},"agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"performer","display":"Performer"}]},"who":{"display":"STOW-RS sender: testclient (user agent testclient; AE title CLUNIE1)"}},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"assembler","display":"Assembler"}]},"who":{"display":"fhir-bridge 0.1.0 on vm"}}],"entity":[{"role":"source","what":{"identifier":{"system":"urn:dicom:uid","value":"urn:oid:1.2.826.0.1.3680043.10.1234.901"},"display":"DICOM study: 4 instances received"}}],"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"PSEUDED","display":"pseudonymized"}],"versionId":"1","lastUpdated":"2026-11-29T16:27:28.920321Z"},"policy":["https://dicom.nema.org/medical/dicom/current/output/chtml/part15/chapter_E.html"]}');
INSERT INTO release_0_1.resource_version VALUES (5, 5, 6, 'Observation', 'a343616e-62fe-42d9-a450-cbf6d3a7bae2', 1, 1795969649034135, 'POST', false, '{"resourceType":"Observation","status":"preliminary","subject":{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee"},"code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"valueQuantity":{"value":37.2,"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"},"id":"a343616e-62fe-42d9-a450-cbf6d3a7bae2","meta":{"versionId":"1","lastUpdated":"2026-11-29T16:27:29.034135Z"}}');
INSERT INTO release_0_1.resource_version VALUES (6, 5, NULL, 'Observation', 'a343616e-62fe-42d9-a450-cbf6d3a7bae2', 2, 1795969649063085, 'PUT', false, '{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee"},"code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"valueQuantity":{"value":37.2,"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"},"id":"a343616e-62fe-42d9-a450-cbf6d3a7bae2","meta":{"versionId":"2","lastUpdated":"2026-11-29T16:27:29.063085Z"}}');
INSERT INTO release_0_1.resource_version VALUES (7, 6, NULL, 'Condition', 'bcfa4f5e-02b4-48e6-a8e0-2fe6b9acd89d', 1, 1795969649131939, 'POST', false, '{"resourceType":"Condition","subject":{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"254637007"}]},"id":"bcfa4f5e-02b4-48e6-a8e0-2fe6b9acd89d","meta":{"versionId":"1","lastUpdated":"2026-11-29T16:27:29.131939Z"}}');
INSERT INTO release_0_1.resource_version VALUES (8, 7, 9, 'Observation', '6b919105-6ade-47d2-b988-f4f456573c13', 1, 1795969649216089, 'POST', false, '{"resourceType":"Observation","status":"cancelled","subject":{"reference":"Patient/0f00d496-c956-5612-bcc7-9885cbf16bee"},"code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"valueQuantity":{"value":37.2,"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"},"id":"6b919105-6ade-47d2-b988-f4f456573c13","meta":{"versionId":"1","lastUpdated":"2026-11-29T16:27:29.216089Z"}}');
INSERT INTO release_0_1.resource_version VALUES (9, 7, NULL, 'Observation', '6b919105-6ade-47d2-b988-f4f456573c13', 2, 1795969649379441, 'DELETE', true, NULL);


--
-- Data for Name: store_info; Type: TABLE DATA; Schema: release_0_1; Owner: -
--

INSERT INTO release_0_1.store_info VALUES ('schema_version', '1');
INSERT INTO release_0_1.store_info VALUES ('cursor_secret', '886b069cb682a4f4bbac01a30b2f05ea95ebb267e59b8d6751ea37e8f3d4a70b');


--
-- Name: audit_event_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.audit_event_id_seq', 8, true);


--
-- Name: bulk_file_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.bulk_file_id_seq', 1, false);


--
-- Name: commit_clock_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.commit_clock_id_seq', 1, false);


--
-- Name: idx_composite_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.idx_composite_id_seq', 6, true);


--
-- Name: idx_date_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.idx_date_id_seq', 3, true);


--
-- Name: idx_number_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.idx_number_id_seq', 1, false);


--
-- Name: idx_quantity_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.idx_quantity_id_seq', 6, true);


--
-- Name: idx_reference_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.idx_reference_id_seq', 16, true);


--
-- Name: idx_string_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.idx_string_id_seq', 2, true);


--
-- Name: idx_token_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.idx_token_id_seq', 30, true);


--
-- Name: idx_uri_id_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.idx_uri_id_seq', 1, false);


--
-- Name: resource_pk_seq; Type: SEQUENCE SET; Schema: release_0_1; Owner: -
--

SELECT pg_catalog.setval('release_0_1.resource_pk_seq', 7, true);


--
-- Name: audit_event audit_event_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.audit_event
    ADD CONSTRAINT audit_event_pkey PRIMARY KEY (id);


--
-- Name: auth_assertion auth_assertion_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.auth_assertion
    ADD CONSTRAINT auth_assertion_pkey PRIMARY KEY (client_id, jti);


--
-- Name: auth_client auth_client_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.auth_client
    ADD CONSTRAINT auth_client_pkey PRIMARY KEY (client_id);


--
-- Name: bulk_chunk bulk_chunk_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_chunk
    ADD CONSTRAINT bulk_chunk_pkey PRIMARY KEY (file_id, "position");


--
-- Name: bulk_file bulk_file_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_file
    ADD CONSTRAINT bulk_file_pkey PRIMARY KEY (id);


--
-- Name: bulk_job_client bulk_job_client_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_job_client
    ADD CONSTRAINT bulk_job_client_pkey PRIMARY KEY (job_id);


--
-- Name: bulk_job bulk_job_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_job
    ADD CONSTRAINT bulk_job_pkey PRIMARY KEY (id);


--
-- Name: commit_clock commit_clock_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.commit_clock
    ADD CONSTRAINT commit_clock_pkey PRIMARY KEY (id);


--
-- Name: idx_composite idx_composite_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_composite
    ADD CONSTRAINT idx_composite_pkey PRIMARY KEY (id);


--
-- Name: idx_date idx_date_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_date
    ADD CONSTRAINT idx_date_pkey PRIMARY KEY (id);


--
-- Name: idx_date_width idx_date_width_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_date_width
    ADD CONSTRAINT idx_date_width_pkey PRIMARY KEY (res_type, param);


--
-- Name: idx_number idx_number_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_number
    ADD CONSTRAINT idx_number_pkey PRIMARY KEY (id);


--
-- Name: idx_quantity idx_quantity_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_quantity
    ADD CONSTRAINT idx_quantity_pkey PRIMARY KEY (id);


--
-- Name: idx_reference idx_reference_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_reference
    ADD CONSTRAINT idx_reference_pkey PRIMARY KEY (id);


--
-- Name: idx_string idx_string_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_string
    ADD CONSTRAINT idx_string_pkey PRIMARY KEY (id);


--
-- Name: idx_token idx_token_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_token
    ADD CONSTRAINT idx_token_pkey PRIMARY KEY (id);


--
-- Name: idx_uri idx_uri_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_uri
    ADD CONSTRAINT idx_uri_pkey PRIMARY KEY (id);


--
-- Name: resource resource_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.resource
    ADD CONSTRAINT resource_pkey PRIMARY KEY (pk);


--
-- Name: resource_version resource_version_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.resource_version
    ADD CONSTRAINT resource_version_pkey PRIMARY KEY (seq);


--
-- Name: store_info store_info_pkey; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.store_info
    ADD CONSTRAINT store_info_pkey PRIMARY KEY (key);


--
-- Name: bulk_file uq_bulk_file_job_ordinal; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_file
    ADD CONSTRAINT uq_bulk_file_job_ordinal UNIQUE (job_id, ordinal);


--
-- Name: resource uq_resource_type_id; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.resource
    ADD CONSTRAINT uq_resource_type_id UNIQUE (res_type, res_id);


--
-- Name: resource_version uq_version_type_id_version; Type: CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.resource_version
    ADD CONSTRAINT uq_version_type_id_version UNIQUE (res_type, res_id, version);


--
-- Name: ix_audit_client; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_audit_client ON release_0_1.audit_event USING btree (client_id, id);


--
-- Name: ix_audit_entity; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_audit_entity ON release_0_1.audit_event USING btree (entity, id);


--
-- Name: ix_audit_recorded; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_audit_recorded ON release_0_1.audit_event USING btree (recorded);


--
-- Name: ix_auth_assertion_expires; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_auth_assertion_expires ON release_0_1.auth_assertion USING btree (expires);


--
-- Name: ix_bulk_job_status; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_bulk_job_status ON release_0_1.bulk_job USING btree (status, lease_expires);


--
-- Name: ix_idx_composite_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_composite_pk ON release_0_1.idx_composite USING btree (res_pk, param, seq_to);


--
-- Name: ix_idx_composite_value; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_composite_value ON release_0_1.idx_composite USING btree (res_type, param, c1_code, c2_code);


--
-- Name: ix_idx_date_high; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_date_high ON release_0_1.idx_date USING btree (res_type, param, high);


--
-- Name: ix_idx_date_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_date_pk ON release_0_1.idx_date USING btree (res_pk, param, seq_to);


--
-- Name: ix_idx_date_value; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_date_value ON release_0_1.idx_date USING btree (res_type, param, low, high);


--
-- Name: ix_idx_number_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_number_pk ON release_0_1.idx_number USING btree (res_pk, param, seq_to);


--
-- Name: ix_idx_number_value; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_number_value ON release_0_1.idx_number USING btree (res_type, param, value);


--
-- Name: ix_idx_quantity_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_quantity_pk ON release_0_1.idx_quantity USING btree (res_pk, param, seq_to);


--
-- Name: ix_idx_quantity_value; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_quantity_value ON release_0_1.idx_quantity USING btree (res_type, param, value);


--
-- Name: ix_idx_reference_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_reference_pk ON release_0_1.idx_reference USING btree (res_pk, param, seq_to);


--
-- Name: ix_idx_reference_target; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_reference_target ON release_0_1.idx_reference USING btree (target_type, target_id);


--
-- Name: ix_idx_reference_value; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_reference_value ON release_0_1.idx_reference USING btree (res_type, param, target_id, target_type);


--
-- Name: ix_idx_string_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_string_pk ON release_0_1.idx_string USING btree (res_pk, param, seq_to);


--
-- Name: ix_idx_string_value; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_string_value ON release_0_1.idx_string USING btree (res_type, param, value);


--
-- Name: ix_idx_token_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_token_pk ON release_0_1.idx_token USING btree (res_pk, param, seq_to);


--
-- Name: ix_idx_token_value; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_token_value ON release_0_1.idx_token USING btree (res_type, param, code, system);


--
-- Name: ix_idx_uri_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_uri_pk ON release_0_1.idx_uri USING btree (res_pk, param, seq_to);


--
-- Name: ix_idx_uri_value; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_idx_uri_value ON release_0_1.idx_uri USING btree (res_type, param, uri);


--
-- Name: ix_resource_type_seq; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_resource_type_seq ON release_0_1.resource USING btree (res_type, seq);


--
-- Name: ix_version_last_updated; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_version_last_updated ON release_0_1.resource_version USING btree (last_updated);


--
-- Name: ix_version_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_version_pk ON release_0_1.resource_version USING btree (res_pk, superseded);


--
-- Name: ix_version_type_pk; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_version_type_pk ON release_0_1.resource_version USING btree (res_type, res_pk, superseded, seq, deleted);


--
-- Name: ix_version_type_seq; Type: INDEX; Schema: release_0_1; Owner: -
--

CREATE INDEX ix_version_type_seq ON release_0_1.resource_version USING btree (res_type, seq, superseded, deleted, res_pk);


--
-- Name: bulk_chunk bulk_chunk_file_id_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_chunk
    ADD CONSTRAINT bulk_chunk_file_id_fkey FOREIGN KEY (file_id) REFERENCES release_0_1.bulk_file(id);


--
-- Name: bulk_file bulk_file_job_id_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_file
    ADD CONSTRAINT bulk_file_job_id_fkey FOREIGN KEY (job_id) REFERENCES release_0_1.bulk_job(id);


--
-- Name: bulk_job_client bulk_job_client_job_id_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.bulk_job_client
    ADD CONSTRAINT bulk_job_client_job_id_fkey FOREIGN KEY (job_id) REFERENCES release_0_1.bulk_job(id);


--
-- Name: idx_composite idx_composite_res_pk_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_composite
    ADD CONSTRAINT idx_composite_res_pk_fkey FOREIGN KEY (res_pk) REFERENCES release_0_1.resource(pk);


--
-- Name: idx_date idx_date_res_pk_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_date
    ADD CONSTRAINT idx_date_res_pk_fkey FOREIGN KEY (res_pk) REFERENCES release_0_1.resource(pk);


--
-- Name: idx_number idx_number_res_pk_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_number
    ADD CONSTRAINT idx_number_res_pk_fkey FOREIGN KEY (res_pk) REFERENCES release_0_1.resource(pk);


--
-- Name: idx_quantity idx_quantity_res_pk_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_quantity
    ADD CONSTRAINT idx_quantity_res_pk_fkey FOREIGN KEY (res_pk) REFERENCES release_0_1.resource(pk);


--
-- Name: idx_reference idx_reference_res_pk_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_reference
    ADD CONSTRAINT idx_reference_res_pk_fkey FOREIGN KEY (res_pk) REFERENCES release_0_1.resource(pk);


--
-- Name: idx_string idx_string_res_pk_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_string
    ADD CONSTRAINT idx_string_res_pk_fkey FOREIGN KEY (res_pk) REFERENCES release_0_1.resource(pk);


--
-- Name: idx_token idx_token_res_pk_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_token
    ADD CONSTRAINT idx_token_res_pk_fkey FOREIGN KEY (res_pk) REFERENCES release_0_1.resource(pk);


--
-- Name: idx_uri idx_uri_res_pk_fkey; Type: FK CONSTRAINT; Schema: release_0_1; Owner: -
--

ALTER TABLE ONLY release_0_1.idx_uri
    ADD CONSTRAINT idx_uri_res_pk_fkey FOREIGN KEY (res_pk) REFERENCES release_0_1.resource(pk);


--
-- PostgreSQL database dump complete
--

\unrestrict UcuCEeu7YJB2bca4fQX3q2bWv59YQscPkxbykxtwr12nNnmsFmPKpjd80dUTak9

