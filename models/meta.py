"""Typed metadata for JWST datamodels.

Fields are named like the JWST schema paths (``meta.exposure.ngroups``) and
each carries the FITS keyword and the HDU it lives in, so one declaration
serves reading, writing, validation and documentation.  Keywords that are not
modelled here are not lost: the I/O layer keeps every original header card
and writes it back.
"""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, create_model

# A schema "number": an int stays an int and a float a float, as stdatamodels keeps the value's
# own type (TSAMPLE = 10 is written back as 10, not 10.0).
Number = int | float


def kw(keyword: str, hdu: str = "PRIMARY", default: Any = None, doc: str | None = None):
    """A metadata field stored as FITS ``keyword`` in extension ``hdu``."""
    return Field(default, description=doc, json_schema_extra={"fits_keyword": keyword, "fits_hdu": hdu})


class Group(BaseModel):
    """A block of metadata (``meta.exposure``, ``meta.instrument``...).

    Unknown entries (from a file's ASDF tree) are allowed and kept, so that a
    round trip loses nothing.
    """

    model_config = ConfigDict(
        extra="allow",
        validate_assignment=True,
        arbitrary_types_allowed=True,
        coerce_numbers_to_str=True,
        protected_namespaces=(),
    )


class Instrument(Group):
    name: str | None = kw("INSTRUME")
    detector: str | None = kw("DETECTOR")
    module: str | None = kw("MODULE")
    channel: str | None = kw("CHANNEL")
    filter: str | None = kw("FILTER")
    pupil: str | None = kw("PUPIL")
    grating: str | None = kw("GRATING")
    band: str | None = kw("BAND")
    fixed_slit: str | None = kw("FXD_SLIT")
    focus_position: Number | None = kw("FOCUSPOS")
    coronagraph: str | None = kw("CORONMSK")
    lamp_state: str | None = kw("LAMP")
    lamp_mode: str | None = kw("OPMODE")
    pupil_imaging_lens: bool | None = kw("PILIN")
    miri_fpe_side: str | None = kw("FPE_SIDE")
    miri_ice_side: str | None = kw("ICE_SIDE")
    filter_position: Number | None = kw("FWCPOS")
    pupil_position: Number | None = kw("PWCPOS")
    # NIRSpec grating wheel: tilt sensor readings and temperature (assign_wcs), MSA metadata file
    gwa_xtilt: Number | None = kw("GWA_XTIL")
    gwa_ytilt: Number | None = kw("GWA_YTIL")
    gwa_tilt: Number | None = kw("GWA_TILT")
    msa_metadata_file: str | None = kw("MSAMETFL")
    msa_metadata_id: int | None = kw("MSAMETID")


class Exposure(Group):
    type: str | None = kw("EXP_TYPE")
    psf_reference: bool | None = kw("IS_PSF")  # a coronagraphic PSF-reference exposure
    count: int | None = kw("EXPCOUNT")
    start_time: Number | None = kw("EXPSTART")
    mid_time: Number | None = kw("EXPMID")
    end_time: Number | None = kw("EXPEND")
    start_time_mjd: Number | None = kw("MJD-BEG", "SCI")
    mid_time_mjd: Number | None = kw("MJD-AVG", "SCI")
    end_time_mjd: Number | None = kw("MJD-END", "SCI")
    readpatt: str | None = kw("READPATT")
    noutputs: int | None = kw("NOUTPUTS")
    nints: int | None = kw("NINTS")
    integration_start: int | None = kw("INTSTART")
    integration_end: int | None = kw("INTEND")
    segment_number: int | None = kw("EXSEGNUM")
    ngroups: int | None = kw("NGROUPS")
    nframes: int | None = kw("NFRAMES")
    groupgap: int | None = kw("GROUPGAP")
    frame_divisor: int | None = kw("FRMDIVSR")
    drop_frames1: int | None = kw("DRPFRMS1")
    drop_frames3: int | None = kw("DRPFRMS3")
    nsamples: int | None = kw("NSAMPLES")
    sample_time: Number | None = kw("TSAMPLE")
    frame_time: Number | None = kw("TFRAME")
    group_time: Number | None = kw("TGROUP")
    integration_time: Number | None = kw("EFFINTTM")
    exposure_time: Number | None = kw("EFFEXPTM")
    effective_exposure_time: Number | None = kw("XPOSURE", "SCI")
    measurement_time: Number | None = kw("TMEASURE")
    duration: Number | None = kw("DURATION")
    elapsed_exposure_time: Number | None = kw("TELAPSE", "SCI")
    nresets_at_start: int | None = kw("NRSTSTRT")
    nresets_between_ints: int | None = kw("NRESETS")
    zero_frame: bool | None = kw("ZEROFRAM")
    data_problem: bool | None = kw("DATAPROB")
    sca_num: int | None = kw("SCA_NUM")
    gain_factor: Number | None = kw("GAINFACT")
    detmode: str | None = kw("DETMODE")
    primary_cosmic_rays: Number | None = kw("PRIMECRS")
    extended_emission_events: Number | None = kw("EXTNCRS")
    average_dark_current: Number | None = kw("AVDRKCUR")
    nrs_normal: int | None = kw("NRS_NORM")  # NIRSpec IRS2: normal pixels between reference pixel blocks
    nrs_reference: int | None = kw("NRS_REF")  # NIRSpec IRS2: interleaved reference pixels per block


class Subarray(Group):
    name: str | None = kw("SUBARRAY")
    xstart: int | None = kw("SUBSTRT1")
    ystart: int | None = kw("SUBSTRT2")
    xsize: int | None = kw("SUBSIZE1")
    ysize: int | None = kw("SUBSIZE2")
    fastaxis: int | None = kw("FASTAXIS")
    slowaxis: int | None = kw("SLOWAXIS")


class Observation(Group):
    date: str | None = kw("DATE-OBS")
    time: str | None = kw("TIME-OBS")
    date_beg: str | None = kw("DATE-BEG")
    date_end: str | None = kw("DATE-END")
    obs_id: str | None = kw("OBS_ID")
    visit_id: str | None = kw("VISIT_ID")
    program_number: str | None = kw("PROGRAM")
    observation_number: str | None = kw("OBSERVTN")
    visit_number: str | None = kw("VISIT")
    visit_group: str | None = kw("VISITGRP")
    sequence_id: str | None = kw("SEQ_ID")
    activity_id: str | None = kw("ACT_ID")
    exposure_number: str | None = kw("EXPOSURE")
    bkgdtarg: bool | None = kw("BKGDTARG")
    template: str | None = kw("TEMPLATE")
    observation_label: str | None = kw("OBSLABEL")


class Program(Group):
    title: str | None = kw("TITLE")
    pi_name: str | None = kw("PI_NAME")
    category: str | None = kw("CATEGORY")


class Visit(Group):
    type: str | None = kw("VISITYPE")
    start_time: str | None = kw("VSTSTART")
    total_exposures: int | None = kw("NEXPOSUR")
    tsovisit: bool | None = kw("TSOVISIT")
    crowded_field: bool | None = kw("CROWDFLD")
    engineering_quality: str | None = kw("ENG_QUAL")


class Target(Group):
    proposer_name: str | None = kw("TARGPROP")
    catalog_name: str | None = kw("TARGNAME")
    type: str | None = kw("TARGTYPE")
    ra: Number | None = kw("TARG_RA")
    dec: Number | None = kw("TARG_DEC")
    proposer_ra: Number | None = kw("PROP_RA")
    proposer_dec: Number | None = kw("PROP_DEC")
    source_type_apt: str | None = kw("SRCTYAPT")
    source_type: str | None = kw("SRCTYPE", "SCI")


class Pointing(Group):
    ra_v1: Number | None = kw("RA_V1", "SCI")
    dec_v1: Number | None = kw("DEC_V1", "SCI")
    pa_v3: Number | None = kw("PA_V3", "SCI")


class Aperture(Group):
    name: str | None = kw("APERNAME")
    pps_name: str | None = kw("PPS_APER")
    position_angle: Number | None = kw("PA_APER", "SCI")


class Dither(Group):
    primary_type: str | None = kw("PATTTYPE")
    position_number: int | None = kw("PATT_NUM")
    total_points: int | None = kw("NUMDTHPT")
    pattern_size: str | None = kw("PATTSIZE")
    subpixel_pattern: str | None = kw("SUBPXPAT")
    subpixel_total_points: int | None = kw("SUBPXPTS")
    x_offset: Number | None = kw("XOFFSET")
    y_offset: Number | None = kw("YOFFSET")
    pattern_start: int | None = kw("PATTSTRT")
    dither_points: int | None = kw("NRIMDTPT")
    dithered_ra: Number | None = kw("DITH_RA")
    dithered_dec: Number | None = kw("DITH_DEC")
    optimized_for: str | None = kw("DITHOPFR")


class Coordinates(Group):
    reference_frame: str | None = kw("RADESYS", "SCI")


class VelocityAberration(Group):
    scale_factor: Number | None = kw("VA_SCALE", "SCI")
    va_ra_ref: Number | None = kw("VA_RA")
    va_dec_ref: Number | None = kw("VA_DEC")


class Guidestar(Group):
    """Guide-star keywords of FGS guider-mode exposures (meta.guidestar)."""

    gs_order: int | None = kw("GS_ORDER")
    gs_id: str | None = kw("GDSTARID")
    gs_ra: Number | None = kw("GS_RA")
    gs_dec: Number | None = kw("GS_DEC")
    gs_mag: Number | None = kw("GS_MAG")
    gs_pcs_mode: str | None = kw("PCS_MODE")
    gs_start_time: str | None = kw("GSSTRTTM")
    gs_stop_time: str | None = kw("GSENDTIM")
    data_start: Number | None = kw("DATASTRT")
    data_end: Number | None = kw("DATAEND")
    gs_acq_exec_stat: str | None = kw("GSACSTAT")


class WcsInfo(Group):
    wcsaxes: int | None = kw("WCSAXES", "SCI")
    crpix1: Number | None = kw("CRPIX1", "SCI")
    crpix2: Number | None = kw("CRPIX2", "SCI")
    crval1: Number | None = kw("CRVAL1", "SCI")
    crval2: Number | None = kw("CRVAL2", "SCI")
    ctype1: str | None = kw("CTYPE1", "SCI")
    ctype2: str | None = kw("CTYPE2", "SCI")
    cunit1: str | None = kw("CUNIT1", "SCI")
    cunit2: str | None = kw("CUNIT2", "SCI")
    cdelt1: Number | None = kw("CDELT1", "SCI")
    cdelt2: Number | None = kw("CDELT2", "SCI")
    pc1_1: Number | None = kw("PC1_1", "SCI")
    pc1_2: Number | None = kw("PC1_2", "SCI")
    pc2_1: Number | None = kw("PC2_1", "SCI")
    pc2_2: Number | None = kw("PC2_2", "SCI")
    s_region: str | None = kw("S_REGION", "SCI")
    v2_ref: Number | None = kw("V2_REF", "SCI")
    v3_ref: Number | None = kw("V3_REF", "SCI")
    vparity: int | None = kw("VPARITY", "SCI")
    v3yangle: Number | None = kw("V3I_YANG", "SCI")
    ra_ref: Number | None = kw("RA_REF", "SCI")
    dec_ref: Number | None = kw("DEC_REF", "SCI")
    roll_ref: Number | None = kw("ROLL_REF", "SCI")
    velosys: Number | None = kw("VELOSYS", "SCI")
    specsys: str | None = kw("SPECSYS", "SCI")
    siaf_xref_sci: Number | None = kw("XREF_SCI", "SCI")
    siaf_yref_sci: Number | None = kw("YREF_SCI", "SCI")
    dispersion_direction: int | None = kw("DISPAXIS", "SCI")
    spectral_order: int | None = kw("SPORDER", "SCI")
    waverange_start: Number | None = kw("WAVSTART", "SCI")  # NIRSpec: the grating/filter's range (m)
    waverange_end: Number | None = kw("WAVEND", "SCI")
    cd1_1: Number | None = kw("CD1_1", "SCI")
    cd1_2: Number | None = kw("CD1_2", "SCI")
    cd2_1: Number | None = kw("CD2_1", "SCI")
    cd2_2: Number | None = kw("CD2_2", "SCI")
    # moving targets (assign_mtwcs)
    mt_ra: Number | None = kw("MT_RA", "SCI")
    mt_dec: Number | None = kw("MT_DEC", "SCI")
    mt_avra: Number | None = kw("MT_AVRA", "SCI")
    mt_avdec: Number | None = kw("MT_AVDEC", "SCI")


# FITS SIP distortion keywords of an imaging WCS (A_ORDER, A_p_q, ... BP_p_q), as
# meta.wcsinfo.a_order, meta.wcsinfo.a_1_1 ...: the orders and every coefficient
# stdatamodels' wcsinfo schema names (2 <= p + q <= 6).  Others stay in the ASDF tree.
SIP_KEYWORDS: tuple[str, ...] = tuple(f"{s}_ORDER" for s in ("A", "B", "AP", "BP")) + tuple(
    f"{s}_{p}_{q}" for s in ("A", "B", "AP", "BP") for p in range(7) for q in range(7) if 2 <= p + q <= 6
)
WcsInfo = create_model(
    "WcsInfo",
    __base__=WcsInfo,
    **{k.lower(): ((int if k.endswith("ORDER") else Number) | None, kw(k, "SCI")) for k in SIP_KEYWORDS},
)


class Resample(Group):
    """Drizzle parameters of a resampled product (meta.resample)."""

    pointings: int | None = kw("NDRIZ")
    weight_type: str | None = kw("RESWHT")
    pixfrac: Number | None = kw("PIXFRAC")
    pixel_scale_ratio: Number | None = kw("PXSCLRT")


class Background(Group):
    method: str | None = kw("BKGMETH")
    level: Number | None = kw("BKGLEVEL")
    subtracted: bool | None = kw("BKGSUB")
    master_background_file: str | None = kw("MASTERBG")
    scaling_factor: Number | None = kw("BKGD_SCL")


class Asn(Group):
    pool_name: str | None = kw("ASNPOOL")
    table_name: str | None = kw("ASNTABLE")


class Photometry(Group):
    conversion_megajanskys: Number | None = kw("PHOTMJSR", "SCI")
    conversion_microjanskys: Number | None = kw("PHOTUJA2", "SCI")
    pixelarea_steradians: Number | None = kw("PIXAR_SR", "SCI")
    pixelarea_arcsecsq: Number | None = kw("PIXAR_A2", "SCI")


class Rscd(Group):
    """What the MIRI rscd step flagged (meta.rscd)."""

    ngroups_skip_int1: int | None = kw("INT1SKIP")
    ngroups_skip_int2p: int | None = kw("INT2SKIP")
    keep_bright_firstgroup_int1: int | None = kw("INT1UGP1")
    keep_bright_firstgroup_int2p: int | None = kw("INT2UGP1")
    keep_groups_saturation_int1: int | None = kw("INT1BORS")
    keep_groups_saturation_int2p: int | None = kw("INT2BORS")


# meta.ref_file.<reftype>.name is stored as R_<abbrev>; the CRDS context as CRDS_CTX.
REF_FILE_KEYWORDS: dict[str, str] = {
    "area": "R_AREA", "bkg": "R_BKG", "dark": "R_DARK", "distortion": "R_DISTOR",
    "emicorr": "R_MIREMI", "filteroffset": "R_FILOFF", "flat": "R_FLAT", "gain": "R_GAIN",
    "ipc": "R_IPC", "lastframe": "R_LASTFR", "linearity": "R_LINEAR", "mask": "R_MASK",
    "persat": "R_PERSAT", "photom": "R_PHOTOM", "readnoise": "R_READNO", "refpix": "R_REFPIX",
    "regions": "R_REGION", "reset": "R_RESET", "rscd": "R_RSCD", "saturation": "R_SATURA",
    "sirskernel": "R_SIRSKL", "superbias": "R_SUPERB", "trapdensity": "R_TRPDEN",
    "trappars": "R_TRPPAR", "drizpars": "R_DRZPRS", "apcorr": "R_APCORR",
    "abvegaoffset": "R_ABVEGA", "pictureframe": "R_PCTFRM", "firstframe": "R_FRSTFR",
}
# the other reftypes of stdatamodels' core schema: jwst records R_<reftype> for every reftype
# its steps consider, N/A included (assign_wcs asks for all its spectroscopic ones on images)
REF_FILE_KEYWORDS.update({
    "badshutter": "R_MSAOPE", "barshadow": "R_BARSHA", "camera": "R_CAMERA", "chromcorr": "R_CHRCOR",
    "collimator": "R_COLLIM", "cubepar": "R_CUBPAR", "disperser": "R_DISPER", "extract1d": "R_EXTR1D",
    "dflat": "R_DFLAT", "fflat": "R_FFLAT", "sflat": "R_SFLAT", "fore": "R_FORE", "fpa": "R_FPA",
    "fringe": "R_FRINGE", "fringefreq": "R_FRIFRQ", "ifufore": "R_IFUFOR", "ifupost": "R_IFUPOS",
    "ifuslicer": "R_IFUSLI", "msa": "R_MSA", "mrsxartcorr": "R_MRSXAR", "mrsptcorr": "R_MRSPT", "nrm": "R_NRM",
    "ote": "R_OTE", "pastasoss": "R_PSTSOS", "pathloss": "R_PTHLOS", "psfmask": "R_PSFMAS",
    "resample": "R_RESAMP", "resolution": "R_RESOL", "speckernel": "R_SPKERN", "specprofile": "R_SPPROF",
    "spectrace": "R_SPTRAC", "specwcs": "R_SPCWCS", "straylight": "R_STRAY", "throughput": "R_THRPUT",
    "tso_photometry": "R_TSPHOT", "v2v3": "R_V2V3", "wavecorr": "R_WAVCOR", "wavelengthrange": "R_WAVRAN",
    "wavemap": "R_WAVMAP",
})

# meta.cal_step.<step> is stored as S_<abbrev>, with the values COMPLETE or SKIPPED.
CAL_STEP_KEYWORDS: dict[str, str] = {
    "assign_wcs": "S_WCS", "assign_mtwcs": "S_MTWCS", "bkg_subtract": "S_BKDSUB",
    "charge_migration": "S_CHGMIG", "clean_flicker_noise": "S_CLNFNS", "dark_sub": "S_DARK",
    "dq_init": "S_DQINIT", "emicorr": "S_MIREMI", "firstframe": "S_FRSTFR", "flat_field": "S_FLAT",
    "gain_scale": "S_GANSCL", "group_scale": "S_GRPSCL", "guider_cds": "S_GUICDS", "ipc": "S_IPC",
    "jump": "S_JUMP", "lastframe": "S_LASTFR", "linearity": "S_LINEAR",
    "outlier_detection": "S_OUTLIR", "persistence": "S_PERSIS", "photom": "S_PHOTOM",
    "picture_frame": "S_PCTFRM", "ramp_fit": "S_RAMP", "refpix": "S_REFPIX", "resample": "S_RESAMP",
    "reset": "S_RESET", "rscd": "S_RSCD", "saturation": "S_SATURA", "skymatch": "S_SKYMAT",
    "source_catalog": "S_SRCCAT", "superbias": "S_SUPERB", "tweakreg": "S_TWKREG",
}
# the 1-D spectral and TSO steps
CAL_STEP_KEYWORDS.update({
    "extract_1d": "S_EXTR1D", "combine_1d": "S_COMB1D", "white_light": "S_WHTLIT",
    "tso_photometry": "S_TSPHOT", "pixel_replace": "S_PXREPL", "adaptive_trace_model": "S_TRCMOD",
    "master_background": "S_MSBSUB",
})
# the spectroscopic Stage 2 steps and the coronagraphy, AMI and WFS&C steps
CAL_STEP_KEYWORDS.update({
    "align_psfs": "S_PSFALI", "ami_analyze": "S_AMIANA", "ami_normalize": "S_AMINOR", "badpix_selfcal": "S_BPXSLF",
    "barshadow": "S_BARSHA", "cube_build": "S_IFUCUB", "emission": "S_TELEMI", "err_init": "S_ERRINI",
    "extract_2d": "S_EXTR2D", "fringe": "S_FRINGE", "imprint": "S_IMPRNT", "klip": "S_KLIP",
    "msa_flagging": "S_MSAFLG", "pathloss": "S_PTHLOS", "residual_fringe": "S_RESFRI", "spectral_leak": "S_SPLEAK",
    "srctype": "S_SRCTYP", "stack_psfs": "S_PSFSTK", "straylight": "S_STRAY", "targ_centroid": "S_TACNTR",
    "wavecorr": "S_WAVCOR", "wfs_combine": "S_WFSCOM", "wfss_contam": "S_CONTAM",
})


class RefFileEntry(Group):
    name: str | None = None


def _ref_entry(keyword: str) -> type[Group]:
    return create_model(
        f"RefFile_{keyword}", __base__=Group, name=(str | None, kw(keyword))
    )


class CrdsInfo(Group):
    context_used: str | None = kw("CRDS_CTX")
    sw_version: str | None = kw("CRDS_VER")


RefFile = create_model(
    "RefFile",
    __base__=Group,
    crds=(CrdsInfo, Field(default_factory=CrdsInfo)),
    **{name: (_ref_entry(k) | None, None) for name, k in REF_FILE_KEYWORDS.items()},
)

CalStep = create_model(
    "CalStep",
    __base__=Group,
    **{name: (str | None, kw(k)) for name, k in CAL_STEP_KEYWORDS.items()},
)


class Meta(Group):
    """The ``meta`` tree of a JWST datamodel."""

    date: str | None = kw("DATE")
    origin: str | None = kw("ORIGIN")
    filename: str | None = kw("FILENAME")
    filetype: str | None = kw("FILETYPE")
    model_type: str | None = kw("DATAMODL")
    telescope: str | None = kw("TELESCOP")
    calibration_software_name: str | None = kw("CAL_SW")
    calibration_software_version: str | None = kw("CAL_VER")
    calibration_software_revision: str | None = kw("CAL_VCS")
    data_processing_software_version: str | None = kw("SDP_VER")
    source_catalog: str | None = kw("SCATFILE")
    segmentation_map: str | None = kw("SEGMFILE")
    direct_image: str | None = kw("DIRIMAGE")  # WFSS: the direct image the catalogue comes from
    bunit_data: str | None = kw("BUNIT", "SCI")
    bunit_err: str | None = kw("BUNIT", "ERR")
    # reference-file header keywords (CRDS matches on these)
    reftype: str | None = kw("REFTYPE")
    pedigree: str | None = kw("PEDIGREE")
    description: str | None = kw("DESCRIP")
    author: str | None = kw("AUTHOR")
    useafter: str | None = kw("USEAFTER")

    instrument: Instrument = Field(default_factory=Instrument)
    exposure: Exposure = Field(default_factory=Exposure)
    subarray: Subarray = Field(default_factory=Subarray)
    observation: Observation = Field(default_factory=Observation)
    program: Program = Field(default_factory=Program)
    visit: Visit = Field(default_factory=Visit)
    target: Target = Field(default_factory=Target)
    pointing: Pointing = Field(default_factory=Pointing)
    aperture: Aperture = Field(default_factory=Aperture)
    dither: Dither = Field(default_factory=Dither)
    coordinates: Coordinates = Field(default_factory=Coordinates)
    velocity_aberration: VelocityAberration = Field(default_factory=VelocityAberration)
    guidestar: Guidestar = Field(default_factory=Guidestar)
    wcsinfo: WcsInfo = Field(default_factory=WcsInfo)
    photometry: Photometry = Field(default_factory=Photometry)
    resample: Resample = Field(default_factory=Resample)
    background: Background = Field(default_factory=Background)
    asn: Asn = Field(default_factory=Asn)
    rscd: Rscd = Field(default_factory=Rscd)
    ref_file: RefFile = Field(default_factory=RefFile)  # type: ignore[valid-type]
    cal_step: CalStep = Field(default_factory=CalStep)  # type: ignore[valid-type]
    # The gwcs WCS object; stored only in the ASDF extension.
    wcs: Any = None


def keyword_fields(cls: type[BaseModel] = Meta, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, str, Any]]:
    """Yield ``(path, keyword, hdu, annotation)`` for every FITS-mapped field under ``cls``."""
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        path = prefix + (name,)
        if "fits_keyword" in extra:
            yield path, extra["fits_keyword"], extra["fits_hdu"], field.annotation
            continue
        ann = field.annotation
        for sub in _model_types(ann):
            yield from keyword_fields(sub, path)


def _model_types(ann) -> list[type[BaseModel]]:
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    out = []
    for a in typing.get_args(ann):
        if isinstance(a, type) and issubclass(a, BaseModel):
            out.append(a)
    return out


KEYWORD_FIELDS: list[tuple[tuple[str, ...], str, str, Any]] = list(keyword_fields())


def get_path(meta: BaseModel, path: tuple[str, ...]):
    obj: Any = meta
    for p in path:
        if obj is None:
            return None
        obj = getattr(obj, p, None)
    return obj


def set_path(tree: dict, path: tuple[str, ...], value) -> None:
    d = tree
    for p in path[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            d[p] = nxt
        d = nxt
    d[path[-1]] = value
