"""Realistic bench data for a practice station: categories and a busy week of events.

Everything goes in through the app's own domain functions (kiosk.events), inside
create_app()'s app context, so the rows are exactly what a manager would have created.

    python bench/datagen.py INSTANCE [--today 50] [--week 300] [--seed 1]

(`kiosk init` must have run on INSTANCE first.)
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import datetime, time, timedelta
from pathlib import Path

CATEGORIES = ["理论宣讲", "志愿服务", "文化活动", "移风易俗", "助老", "健康", "阅读", "科普", "环保"]

NEIGHBOURHOODS = ["南后街", "衣锦坊", "文儒坊", "光禄坊", "杨桥巷", "郎官巷", "塔巷", "黄巷", "宫巷", "安民巷",
                  "吉庇巷", "澳门路", "通湖路", "乌山路"]

# Per category: title patterns; {n} is a neighbourhood, {k} a running number (第k期).
TITLES = {
    "理论宣讲": ["“五进五学”理论宣讲进{n}", "党的创新理论微宣讲（第{k}期）", "“红色大讲坛”：林则徐与福州",
             "百姓名嘴说政策：医保新规怎么用", "“榕城讲堂”：新时代文明实践怎么做", "老党员讲初心故事",
             "防范电信诈骗宣讲", "民法典进{n}：邻里纠纷怎么办", "青年理论学习小组分享会"],
    "志愿服务": ["{n}楼道清洁行动", "文明交通劝导：地铁口志愿服务", "法律咨询进社区", "义务理发进{n}",
             "“衣”旧情深：旧衣物回收", "家电义务维修", "文明养犬宣传", "共享单车整理志愿行动",
             "防溺水安全巡查", "消防安全隐患排查"],
    "文化活动": ["闽剧票友会", "写春联 送春联", "社区广场舞展演", "评话伬艺欣赏会", "软木画手工体验",
             "“三坊七巷”非遗寻访", "书法兴趣班（第{k}课）", "茉莉花茶茶艺课", "社区合唱团排练",
             "露天电影放映"],
    "移风易俗": ["婚事新办 丧事简办 座谈会", "文明祭扫倡议活动", "“光盘行动”进{n}", "好家风好家训分享会",
             "新时代文明家庭评选", "红白理事会议事会"],
    "助老": ["智能手机课堂：教老人用健康码", "为长者理发", "拗九节送粥敬老", "独居老人上门探访（{n}片区）",
             "老年人防诈骗讲座", "长者生日会", "助老助餐志愿服务", "陪老人读报聊天"],
    "健康": ["义诊：量血压、测血糖", "太极拳晨练", "中医养生讲座：春季养肝", "八段锦学习班（第{k}课）",
             "心肺复苏急救培训", "口腔健康进{n}", "健康饮食讲座：少盐少油", "眼科免费筛查"],
    "阅读": ["家庭读书会：红色经典共读", "亲子共读绘本", "“书香{n}”图书漂流", "青少年读书分享会",
             "老年读报小组", "《福州老街巷》读书会"],
    "科普": ["科普大篷车进{n}", "青少年科学小实验", "防灾减灾科普展", "垃圾分类知识竞赛",
             "天文观测夜：一起看月亮", "无人机科普体验"],
    "环保": ["垃圾分类宣传：我们一起做", "闽江沿岸净滩行动", "“绿色{n}”植树护绿", "旧物改造手工坊",
             "节约用水宣传", "河长制巡河志愿行动"],
}

PLACES = ["三坊七巷社区活动中心", "社区一楼书画室", "社区二楼会议室", "社区图书角", "社区卫生服务站门口",
          "社区一楼活动室", "林则徐纪念馆报告厅", "地铁1号线南门兜站 B 口", "社区服务大厅",
          "三坊七巷南后街戏台", "社区广场", "乌山公园东门", "南后街便民服务点", "衣锦坊水榭戏台",
          "{n}口", "{n}小区楼下", "鼓楼区图书馆二楼", "安泰河边步道", "冰心故居门前", "社区党群服务中心"]

ORGANISERS = ["巾帼志愿服务队", "书法家协会志愿服务队", "区委宣讲团", "青年志愿服务队", "阅读推广志愿服务队",
              "鼓楼区医院志愿服务队", "社区红白理事会", "大学生志愿服务队", "区新时代文明实践中心",
              "交通文明志愿服务队", "法律志愿服务队", "社区文艺队", "环保志愿服务队", "党员志愿服务队",
              "老年体协", "派出所民警", "消防救援站", "科协科普志愿服务队", "关工委“五老”志愿服务队"]

DESCRIPTIONS = [
    "欢迎居民踊跃参加，请提前 10 分钟到场签到。",
    "志愿者请穿志愿者马甲，带上志愿者证，到场后找队长报到。",
    "活动免费，名额有限，报满为止。",
    "请自带水杯，少用一次性纸杯。",
    "行动不便的老人可以请家属陪同，我们安排座位。",
    "雨天改在室内举行，地点另行通知。",
    "参加活动可以累计志愿服务时长和积分。",
    "",
]


def _pattern(rng: random.Random, text: str, k: int) -> str:
    return text.format(n=rng.choice(NEIGHBOURHOODS), k=k)


def make_events(rng: random.Random, day, count: int, category_ids: dict[str, str]) -> list:
    """`count` EventData for one day, sorted by start, between 07:00 and 21:30."""
    from kiosk.events import EventData

    out = []
    for _ in range(count):
        cat = rng.choice(list(TITLES))
        start = datetime.combine(day, time(7, 0)) + timedelta(minutes=30 * rng.randrange(0, 27))
        length = timedelta(minutes=rng.choice([45, 60, 90, 90, 120, 120, 150, 180]))
        end = min(start + length, datetime.combine(day, time(21, 30)))
        if end <= start:
            end = start + timedelta(minutes=30)
        out.append(EventData(
            title=_pattern(rng, rng.choice(TITLES[cat]), rng.randint(1, 30)),
            starts_at=start, ends_at=end, category_id=category_ids[cat],
            place=_pattern(rng, rng.choice(PLACES), 0), organiser=rng.choice(ORGANISERS),
            description=rng.choice(DESCRIPTIONS), capacity=rng.choice([None, None, 10, 15, 20, 30, 40, 60, 100]),
        ))
    return out


def _spread(total: int, days: int) -> list[int]:
    """`total` split over `days` as evenly as possible."""
    base, extra = divmod(total, days)
    return [base + (1 if i < extra else 0) for i in range(days)]


def populate_board(instance: Path, today: int = 50, week: int = 300, seed: int = 1,
                   cancelled_share: float = 0.03) -> dict:
    """Add `today` events today and `week` in total over the seven days from today (inclusive).

    Also the categories and the station's name. Returns the counts the kiosk board then shows:
    {"events_today", "events_week", "categories"}.
    """
    from kiosk import create_app, events
    from kiosk.clock import now
    from kiosk.db import begin_write, db

    if week < today:
        raise ValueError("week counts today's events too, so it cannot be below today")
    rng = random.Random(seed)
    app = create_app({"INSTANCE_PATH": str(instance)})
    with app.app_context():
        try:
            begin_write()
            station = events.ensure_station()
            events.update_station("bench", "三坊七巷社区新时代文明实践站", "GL-SFQX", station.idle_timeout_s)
            by_name = {c.name: c for c in events.categories(active_only=False)}
            for name in CATEGORIES:
                if name not in by_name:
                    by_name[name] = events.add_category("bench", name)
            ids = {name: c.id for name, c in by_name.items()}
            first = now().date()
            per_day = [today, *_spread(week - today, 6)]
            for offset, count in enumerate(per_day):
                for data in make_events(rng, first + timedelta(days=offset), count, ids):
                    ev = events.create_event("bench", data)
                    if rng.random() < cancelled_share:
                        events.cancel_event("bench", ev, "天气原因，改期另行通知")
            db.session.commit()
            b = events.board(now())
            result = {
                "events_today": len(b.today),
                "events_week": len(b.today) + sum(1 for e in b.week if e.starts_at.date() < first + timedelta(days=7)),
                "categories": len(events.categories()),
            }
        finally:
            db.session.remove()
            db.engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", type=Path)
    parser.add_argument("--today", type=int, default=50)
    parser.add_argument("--week", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(populate_board(args.instance, args.today, args.week, args.seed))


if __name__ == "__main__":
    sys.exit(main())
