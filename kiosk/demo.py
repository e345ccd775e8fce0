"""Demo data drawn from Gulou District, Fuzhou (see ../shared/seed): a station, two weeks of events.

Three demo stations of the district can be made (`kiosk demo --station 1|2|3`), each with its own
code, volunteers and mobiles, so that the nightly sync between them can be tried.
"""

import secrets
from datetime import datetime, time, timedelta

from flask import current_app
from sqlalchemy import select

from . import accounts, events
from .clock import now
from .db import begin_write, db
from .models import Category, Event, EventSeries, Manager

CATEGORIES = ["理论宣讲", "志愿服务", "文化活动", "移风易俗", "助老", "健康", "阅读"]

# (day offset from today, start, end, title, category, place, organiser, capacity, description)
EVENTS = [
    (0, "08:30", "11:30", "拗九节送粥敬老", "助老", "三坊七巷社区活动中心", "巾帼志愿服务队", 30,
     "正月廿九“拗九节”，志愿者为辖区 80 岁以上老人熬煮、送上拗九粥。欢迎志愿者报名帮忙盛粥、送粥上门。"),
    (0, "09:00", "11:00", "写春联 送春联", "文化活动", "社区一楼书画室", "书法家协会志愿服务队", 40,
     "书法家现场挥毫，为居民免费书写春联、“福”字。自带红纸也可以。"),
    (0, "14:30", "16:00", "“五进五学”理论宣讲进社区", "理论宣讲", "社区二楼会议室", "区委宣讲团", 60,
     "宣讲员用身边事讲清楚新政策，会后答疑。"),
    (0, "15:00", "17:00", "防疫志愿服务：核酸检测点秩序维护", "志愿服务", "南后街检测点", "青年志愿服务队", 12,
     "协助维持排队秩序、扫码登记。请穿志愿者马甲，提前 15 分钟到。"),
    (0, "19:00", "20:30", "家庭读书会：红色经典共读", "阅读", "社区图书角", "阅读推广志愿服务队", 25,
     "带孩子一起读红色经典，分享读书心得。"),
    (1, "09:00", "11:00", "义诊：量血压、测血糖", "健康", "社区卫生服务站门口", "鼓楼区医院志愿服务队", None,
     "医生免费量血压、测血糖，解答用药问题。请带上医保卡。"),
    (1, "14:00", "16:00", "移风易俗：婚事新办 丧事简办 座谈会", "移风易俗", "社区二楼会议室", "社区红白理事会", 30,
     "请居民代表一起商量新的村规民约，倡导文明节俭。"),
    (2, "09:30", "11:00", "智能手机课堂：教老人用健康码", "助老", "社区一楼活动室", "大学生志愿服务队", 20,
     "一对一教老人使用手机：扫码、视频通话、网上挂号。"),
    (2, "15:00", "17:00", "“红色大讲坛”：林则徐与福州", "理论宣讲", "林则徐纪念馆报告厅", "区新时代文明实践中心", 100,
     "请文史专家讲述林则徐的家国情怀。"),
    (3, "08:00", "10:00", "文明交通劝导：地铁口志愿服务", "志愿服务", "地铁1号线南门兜站 B 口", "交通文明志愿服务队", 15,
     "在地铁口引导市民文明出行、有序排队。"),
    (4, "09:00", "11:30", "法律咨询进社区", "志愿服务", "社区服务大厅", "法律志愿服务队", None,
     "律师现场解答邻里纠纷、赡养、继承等法律问题。"),
    (5, "15:00", "17:00", "闽剧票友会", "文化活动", "三坊七巷南后街戏台", "社区文艺队", 80,
     "闽剧爱好者登台演唱，欢迎居民观看。"),
    (6, "09:00", "11:00", "垃圾分类宣传：我们一起做", "志愿服务", "社区各小区门口", "环保志愿服务队", 20,
     "教居民正确分类，发放宣传手册。"),
    (7, "09:00", "10:30", "重阳敬老：为长者理发", "助老", "社区一楼活动室", "巾帼志愿服务队", 15,
     "理发师志愿者为老人免费理发、修面。"),
    (-1, "09:00", "11:00", "社区环境大扫除", "志愿服务", "各小区楼道", "党员志愿服务队", 40,
     "清理楼道杂物和小广告。"),
    (-3, "14:30", "16:30", "防范电信诈骗讲座", "理论宣讲", "社区二楼会议室", "派出所民警", 60,
     "民警讲解常见诈骗手法，教大家守好钱袋子。"),
    (-6, "19:00", "20:30", "亲子共读绘本", "阅读", "社区图书角", "阅读推广志愿服务队", 20, ""),
]


DEMO_PIN = "258369"
VOLUNTEERS = [
    ("林秀英", "13805910001", ["巾帼志愿服务队"]), ("陈建国", "13805910002", ["党员志愿服务队"]),
    ("黄丽华", "13805910003", ["书法家协会志愿服务队"]), ("郑明", "13805910004", ["青年志愿服务队"]),
    ("王淑珍", "13805910005", ["巾帼志愿服务队", "阅读推广志愿服务队"]), ("吴志强", "13805910006", ["法律志愿服务队"]),
    ("刘芳", "13805910007", ["鼓楼区医院志愿服务队"]), ("张伟", "13805910008", ["交通文明志愿服务队"]),
]


# (station name, code, mobile prefix, volunteer names)
STATIONS = {
    1: ("三坊七巷社区新时代文明实践站", "GL-SFQX", "1380591", [n for n, _m, _t in VOLUNTEERS]),
    2: ("温泉街道新时代文明实践站", "GL-WQ", "1380592",
        ["陈美玲", "林国栋", "郑秀兰", "黄志明", "何丽娟", "李建华", "周桂英", "杨帆"]),
    3: ("东街街道新时代文明实践站", "GL-DJ", "1380593",
        ["翁玉梅", "魏振华", "游淑芬", "江海", "许碧霞", "卓立新", "潘月娥", "施文斌"]),
}

REWARDS = [("洗衣液", 30, 20, None, 0), ("大米 5 斤", 60, 10, 1, 0), ("雨伞", 40, 5, None, 0),
           ("社区诊所免费体检", 100, 8, 1, 1), ("牙膏套装", 20, 30, 2, 0)]


def _rewards(actor: str) -> None:
    """A small rewards catalog: daily goods and a clinic check-up (from the seed article)."""
    from . import rewards

    if rewards.catalog(active_only=False):
        return
    for name, price, stock, monthly, stars in REWARDS:
        rewards.create_reward(actor, rewards.RewardData(name=name, price_points=price, monthly_limit=monthly,
                                                        min_stars=stars), stock=stock)


def _volunteers(actor: str, which: int = 1) -> None:
    """Eight demo volunteers (PIN 258369) with some past service, and one walk-in waiting."""
    from . import checkins, volunteers

    if db.session.scalar(select(volunteers.Volunteer.id).limit(1)) is not None:
        return
    _name, _code, prefix, names = STATIONS[which]
    made = [volunteers.register(actor, n, f"{prefix}{i:04d}", DEMO_PIN, teams=t)
            for i, (n, (_n, _m, t)) in enumerate(zip(names, VOLUNTEERS), 1)]
    volunteers.register("walk-in:kiosk", "赵阿姨" if which == 1 else f"新来的{which}号", f"{prefix}0009", DEMO_PIN,
                        via="kiosk")
    past = db.session.scalars(select(Event).where(Event.ends_at < now(), Event.cancelled_at.is_(None))
                              .order_by(Event.starts_at)).all()
    for i, ev in enumerate(past):
        for v in made[i % 3: i % 3 + 4]:
            checkins.add_from_paper(actor, v, ev, ev.starts_at, ev.ends_at, "演示数据")


def _at(day, hhmm: str) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(h, m))


def load(reset: bool = False, which: int = 1) -> str | None:
    """Fill the station with demo data (demo station 1, 2 or 3: STATIONS); returns the demo
    manager's new password, if one was made."""
    actor = "demo"
    begin_write()
    if reset:
        # Row by row through the ORM, so that the change log records each deletion.
        for model in (Event, EventSeries, Category):
            for row in db.session.scalars(select(model)):
                db.session.delete(row)
        db.session.flush()
    station = events.ensure_station()
    events.update_station(actor, STATIONS[which][0], STATIONS[which][1], station.idle_timeout_s)
    by_name = {c.name: c for c in events.categories(active_only=False)}
    for name in CATEGORIES:
        if name not in by_name:
            by_name[name] = events.add_category(actor, name)
    today = now().date()
    if db.session.scalar(select(Event.id).limit(1)) is None:
        for offset, start, end, title, cat, place, organiser, capacity, description in EVENTS:
            day = today + timedelta(days=offset)
            events.create_event(actor, events.EventData(
                title=title, starts_at=_at(day, start), ends_at=_at(day, end),
                category_id=by_name[cat].id, place=place, organiser=organiser,
                capacity=capacity, description=description,
            ))
        # A weekly series, as a manager would set it up: every Tuesday and Thursday morning.
        first = today - timedelta(days=7)
        events.create_weekly_series(actor, events.EventData(
            title="太极拳晨练", starts_at=_at(first, "07:30"), ends_at=_at(first, "08:30"),
            category_id=by_name["健康"].id, place="乌山公园东门", organiser="老年体协",
            description="跟着老师练二十四式太极拳，强身健体。",
        ), {2, 4}, today + timedelta(days=14))
        # One running now, whenever the demo is loaded, so that signing in can be tried at once.
        hour = now().replace(minute=0, second=0)
        events.create_event(actor, events.EventData(
            title="文明实践站值班：接待居民、整理图书", starts_at=hour - timedelta(hours=1),
            ends_at=hour + timedelta(hours=3), category_id=by_name["志愿服务"].id, place="实践站一楼大厅",
            organiser="党员志愿服务队", capacity=10,
            description="在实践站接待来访居民，登记服务需求，整理图书角。",
        ))
        cancelled = events.create_event(actor, events.EventData(
            title="露天电影：《闽江之恋》", starts_at=_at(today + timedelta(days=3), "19:00"),
            ends_at=_at(today + timedelta(days=3), "21:00"), category_id=by_name["文化活动"].id,
            place="社区广场", organiser="社区文艺队",
        ))
        events.cancel_event(actor, cancelled, "天气预报有雨，改期另行通知")
    _volunteers(actor, which)
    _rewards(actor)
    password = None
    if db.session.scalar(select(Manager.id).where(Manager.username == "demo")) is None:
        password = secrets.token_urlsafe(9)
        accounts.create_manager(actor, "demo", password, "演示管理员")
        path = f"{current_app.instance_path}/demo-manager.txt"
        with open(path, "w") as f:
            f.write(f"username: demo\npassword: {password}\n")
    return password
